"""Reading, validating and modelling the configuration files."""

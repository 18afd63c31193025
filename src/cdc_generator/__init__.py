"""cdc-generator: YAML in, Strimzi/Debezium CDC pipelines out."""

__version__ = "0.1.0"

"""Shared fixtures: a real PostgreSQL per test session (tests/pg_fixtures.py)."""

pytest_plugins = ["tests.pg_fixtures"]

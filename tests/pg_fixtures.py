"""pytest fixtures for a real local PostgreSQL server (see cdc_generator.localpg).

Register with ``pytest_plugins`` in tests/conftest.py.  Tests that use these fixtures
get the ``postgres`` marker automatically (deselect with ``-m "not postgres"``).  If the
server cannot start, every such test *errors* with the reason and the server log; it is
never skipped.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from cdc_generator import localpg

#: Settings of the shared session server (on top of localpg.DEFAULT_SETTINGS).
SESSION_SETTINGS: dict[str, str] = {
    "wal_level": "logical",
    "max_replication_slots": "20",
    "max_wal_senders": "20",
}

_PG_FIXTURES = frozenset({"pg_server", "pg_db"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _PG_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[localpg.LocalPostgres]:
    """One PostgreSQL server (wal_level=logical) for the whole test session."""
    try:
        server = localpg.start(settings=SESSION_SETTINGS)
    except localpg.LocalPostgresError as exc:
        pytest.fail(f"could not start local PostgreSQL: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_db(pg_server: localpg.LocalPostgres, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, uniquely named database on ``pg_server``; dropped afterwards."""
    stem = re.sub(r"[^a-z0-9_]+", "_", request.node.name.lower()).strip("_")[:40]
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    pg_server.create_database(name)
    try:
        yield name
    finally:
        if pg_server.running:
            pg_server.drop_database(name)

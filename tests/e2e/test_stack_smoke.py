"""Smoke test of the e2e harness with a hand-written Debezium PostgreSQL connector.

A real PostgreSQL (``pg_server``/``pg_db`` from tests/pg_fixtures.py), the session's
Kafka cluster and Connect worker: the connector snapshots a table, then streams an insert, an
update and a delete. Database coordinates reach the worker only through its
environment, as ``${env:VAR}`` references resolved by its EnvVarConfigProvider.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from cdc_generator import localpg

from .kafka import Record, consume, list_topics
from .stack import POSTGRES_CONNECTOR, Stack, StackError, start_stack

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

#: worker environment variables the connector configs refer to
PG_ENV = {
    "host": "CDC_E2E_PG_HOST",
    "port": "CDC_E2E_PG_PORT",
    "user": "CDC_E2E_PG_USER",
    "password": "CDC_E2E_PG_PASSWORD",
}


@pytest.fixture
def e2e_stack(shared_stack: Stack) -> Stack:
    return shared_stack


def source_config(dbname: str, *, prefix: str, slot: str, **overrides: str) -> dict[str, str]:
    config = {
        "connector.class": POSTGRES_CONNECTOR,
        "tasks.max": "1",
        "plugin.name": "pgoutput",
        "database.hostname": f"${{env:{PG_ENV['host']}}}",
        "database.port": f"${{env:{PG_ENV['port']}}}",
        "database.user": f"${{env:{PG_ENV['user']}}}",
        "database.password": f"${{env:{PG_ENV['password']}}}",
        "database.dbname": dbname,
        "topic.prefix": prefix,
        "slot.name": slot,
        "publication.name": f"{slot}_pub",
        "publication.autocreate.mode": "filtered",
        "table.include.list": "public.customers",
        "heartbeat.interval.ms": "1000",
        # the brokers create no topic on their own
        "topic.creation.default.replication.factor": "1",
        "topic.creation.default.partitions": "1",
    }
    config.update(overrides)
    return config


def validation_errors(answer: dict[str, Any]) -> dict[str, list[str]]:
    """``{config name: [error, ...]}`` for every config the worker found fault with."""
    errors: dict[str, list[str]] = {}
    for entry in answer["configs"]:
        value = entry["value"]
        if value["errors"]:
            errors[value["name"]] = list(value["errors"])
    return errors


def by_key(records: list[Record]) -> dict[int, list[str | None]]:
    """Debezium ops per primary key in partition order (None: tombstone)."""
    ops: dict[int, list[str | None]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        ops.setdefault(int(record.key_payload["id"]), []).append(record.op)
    return ops


def test_postgres_source_snapshot_then_stream(
    e2e_stack: Stack, pg_server: localpg.LocalPostgres, pg_db: str
) -> None:
    with pg_server.connect(pg_db) as conn:
        conn.execute("CREATE TABLE public.customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("INSERT INTO public.customers VALUES (1, 'ada'), (2, 'bob'), (3, 'cy')")
    name = "smoke-pg-source"
    topic = "smoke.public.customers"
    config = source_config(pg_db, prefix="smoke", slot="smoke_slot")

    with e2e_stack.keep_logs_on_failure(name):
        answer = e2e_stack.validate(POSTGRES_CONNECTOR, config)
        assert answer["error_count"] == 0, validation_errors(answer)

        e2e_stack.create(name, config)
        try:
            e2e_stack.wait_running(name, timeout=60)

            snapshot = consume(
                e2e_stack.bootstrap, [topic], until=lambda rs: len(rs) >= 3, timeout=30
            )
            assert by_key(snapshot) == {1: ["r"], 2: ["r"], 3: ["r"]}
            assert {r.value_payload["after"]["name"] for r in snapshot} == {"ada", "bob", "cy"}

            with pg_server.connect(pg_db) as conn:
                conn.execute("INSERT INTO public.customers VALUES (4, 'dee')")
                conn.execute("UPDATE public.customers SET name = 'bobby' WHERE id = 2")
                conn.execute("DELETE FROM public.customers WHERE id = 3")

            expected = {1: ["r"], 2: ["r", "u"], 3: ["r", "d", None], 4: ["c"]}
            records = consume(
                e2e_stack.bootstrap,
                [topic],
                until=lambda rs: by_key(rs) == expected,
                timeout=30,
            )
            assert by_key(records) == expected
            changes = {r.op: r.value_payload for r in records if r.op in {"c", "u", "d"}}
            assert changes["c"]["after"] == {"id": 4, "name": "dee"}
            assert changes["u"]["after"] == {"id": 2, "name": "bobby"}
            assert changes["d"]["before"]["id"] == 3
            assert changes["d"]["after"] is None
            assert all(r.value_payload["source"]["db"] == pg_db for r in records if r.op)

            assert "__debezium-heartbeat.smoke" in list_topics(e2e_stack.bootstrap)
            status = e2e_stack.status(name)
            assert status is not None
            assert status["connector"]["state"] == "RUNNING"
            assert [t["state"] for t in status["tasks"]] == ["RUNNING"]
        finally:
            e2e_stack.delete(name)
        assert e2e_stack.status(name) is None


def test_broken_config_is_reported_by_validate(e2e_stack: Stack, pg_db: str) -> None:
    config = source_config(pg_db, prefix="broken", slot="broken_slot", **{"plugin.name": "bogus"})
    with e2e_stack.keep_logs_on_failure("broken config"):
        answer = e2e_stack.validate(POSTGRES_CONNECTOR, config)
        errors = validation_errors(answer)
        assert answer["error_count"] >= 1
        assert "plugin.name" in errors, errors

        # the worker refuses to create it, too
        with pytest.raises(StackError, match="HTTP 400"):
            e2e_stack.create("broken-pg-source", config)
        assert e2e_stack.status("broken-pg-source") is None


def test_processes_are_stopped(tmp_path: Path) -> None:
    """The context manager stops and reaps every process."""
    with start_stack(tmp_path, env={}) as stack:
        pids = stack.pids()
        assert set(pids) == {"broker-1", "connect-0"}
        assert all(rss for rss in stack.rss_bytes().values())
    assert stack.pids() == {}
    for pid in pids.values():
        assert not Path(f"/proc/{pid}").exists() or _is_zombie_free(pid)


def _is_zombie_free(pid: int) -> bool:
    # the PID may already belong to an unrelated new process; it must not be our zombie
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.split(") ", 1)[1][0] != "Z"

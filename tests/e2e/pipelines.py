"""Generated connectors on the real engine: run them, read what they emit, and fail in
words that name the generated file.

Everything here goes through :mod:`cdc_generator.connect`, the same code that turns a
``KafkaConnector`` file into the request Strimzi sends: ``${env:VAR}`` references stay
as they are and the worker resolves them from its environment (:func:`worker_env`).
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from cdc_generator import connect, localpg
from cdc_generator.layout import GENERATED_DIR
from cdc_generator.report import problems_text

from .kafka import Record, consume, list_topics, read_all
from .stack import ConnectorFailedError, Stack, StackError

log = logging.getLogger(__name__)

#: how long a generated connector gets to deliver an expected event
WAIT_S = 30.0

SOURCE_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
SINK_CLASS = "io.debezium.connector.jdbc.JdbcSinkConnector"
ROUTER_KEY_FIELD = "__dbz__physicalTableIdentifier"

#: variables the repository's own config and the test configs refer to
REPO_GROUP_VARS = ("POSTGRES_ASMA", "POSTGRES_ADOPUS")
TEST_PG_VARS = "CDC_E2E_PG"
TEST_SINK_VARS = "CDC_E2E_SINK"

#: a key as a hashable value: the key payload's (field, value) pairs, sorted
Key = tuple[tuple[str, Any], ...]


def _server_vars(stem: str, pg: localpg.LocalPostgres) -> dict[str, str]:
    return {f"{stem}_HOST": pg.host, f"{stem}_PORT": str(pg.port),
            f"{stem}_USER": pg.user, f"{stem}_PASSWORD": pg.password}


def worker_env(pg: localpg.LocalPostgres, sink: localpg.LocalPostgres) -> dict[str, str]:
    """The worker environment: every ``${env:VAR}`` the generated configs use; sources
    read ``pg``, sinks write to ``sink`` (a second server)."""
    env: dict[str, str] = {}
    for stem in (*REPO_GROUP_VARS, TEST_PG_VARS):
        env |= _server_vars(stem, pg)
    env |= _server_vars(TEST_SINK_VARS, sink)
    # the repository's sink block (${POSTGRES_SINK_HOST}, ${POSTGRES_USER}, ...)
    env |= {"POSTGRES_SINK_HOST": sink.host, "POSTGRES_SINK_PORT": str(sink.port),
            "POSTGRES_USER": sink.user, "POSTGRES_PASSWORD": sink.password}
    return env


def key(**fields: Any) -> Key:
    return tuple(sorted(fields.items()))


def key_of(record: Record) -> Key:
    payload = record.key_payload
    if not isinstance(payload, Mapping):
        raise AssertionError(f"record on {record.topic} has a non-struct key: {record.key!r}")
    return tuple(sorted(payload.items()))


def source_of(record: Record) -> dict[str, Any]:
    value = record.value_payload
    if not isinstance(value, Mapping) or not isinstance(value.get("source"), Mapping):
        raise AssertionError(f"record on {record.topic} is no Debezium change event: "
                             f"{record.value!r}")
    return dict(value["source"])


def table_of(record: Record) -> str:
    source = source_of(record)
    return f"{source['schema']}.{source['table']}"


def row_of(record: Record) -> dict[str, Any]:
    """The row after the change (before it, for a delete)."""
    value = record.value_payload
    row = value.get("after") or value.get("before") or {}
    return dict(row)


def ops_by_key(records: Iterable[Record]) -> dict[Key, list[str | None]]:
    """Debezium ops per key, in partition order (a key always lands in one partition)."""
    ops: dict[Key, list[str | None]] = {}
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        ops.setdefault(key_of(record), []).append(record.op)
    return ops


def _fmt_ops(ops: Mapping[Key, Sequence[str | None]]) -> str:
    return ", ".join(f"{dict(k)}: {''.join(o or '-' for o in v)}" for k, v in sorted(
        ops.items(), key=lambda item: repr(item[0])))


# --------------------------------------------------------------------------- sources


@dataclass
class Running:
    """Generated connectors created on a stack, and what the sources emitted."""

    stack: Stack
    connectors: list[connect.GeneratedConnector]
    #: every record read so far, per topic (filled by :meth:`events`)
    seen: dict[str, list[Record]] = field(default_factory=dict)

    def by_name(self, name: str) -> connect.GeneratedConnector:
        for connector in self.connectors:
            if connector.name == name:
                return connector
        raise AssertionError(f"no generated connector {name!r} among "
                             f"{[c.path for c in self.connectors]}")

    def events(self, connector: connect.GeneratedConnector, topic: str, table: str,
               until: Callable[[list[Record]], bool], *, timeout: float = WAIT_S,
               expectation: str = "") -> list[Record]:
        """Read ``topic`` until ``until(records of table)``; the records of ``table``.

        On time-out the error names the generated file, the table and the topic."""
        last: list[Record] = []

        def of_table(records: list[Record]) -> list[Record]:
            return [r for r in records if r.value is not None and table_of(r) == table]

        def done(records: list[Record]) -> bool:
            last[:] = records
            return until(of_table(records))

        try:
            records = consume(self.stack.bootstrap, [topic], until=done, timeout=timeout)
        except TimeoutError:
            mine = of_table(last)
            if not mine:
                others = sorted({table_of(r) for r in last if r.value is not None})
                raise AssertionError(
                    f"{connector.path}: no events for {table} on topic {topic} within "
                    f"{timeout:g} s — is it in table.include.list?"
                    + (f" (the topic holds events of {', '.join(others)})" if others else "")
                ) from None
            raise AssertionError(
                f"{connector.path}: events for {table} on topic {topic} did not reach "
                f"{expectation or 'the expected state'} within {timeout:g} s; "
                f"ops per key: {_fmt_ops(ops_by_key(mine))}") from None
        self.seen[topic] = records
        return of_table(records)

    def evidence(self, services: Iterable[str], tables: Iterable[str]) -> str:
        """What Kafka and Connect hold for ``tables`` of ``services``: the Debezium ops per
        key on each of their topics, and every connector's state. For a failed
        comparison, to tell a record the source never produced from one a sink dropped."""
        prefixes = tuple(f"cdc.{s}." for s in services)
        suffixes = tuple(f".{t}" for t in tables)
        lines: list[str] = []
        try:
            topics = sorted(t for t in list_topics(self.stack.bootstrap)
                            if t.startswith(prefixes) and t.endswith(suffixes))
            by_topic: dict[str, list[Record]] = {}
            for record in read_all(self.stack.bootstrap, topics):
                by_topic.setdefault(record.topic, []).append(record)
            for topic in topics:
                mine = [r for r in by_topic.get(topic, []) if r.value is not None]
                lines.append(f"topic {topic}: {len(mine)} change events; ops per key: "
                             f"{_fmt_ops(ops_by_key(mine)) or 'none'}")
        except Exception as failed:  # evidence for a failure already raised: best effort
            lines.append(f"(could not read the topics: {failed})")
        for c in self.connectors:
            if any(s in c.name for s in services):
                status = self.stack.status(c.name) or {}
                tasks = ", ".join(f"{t.get('id')}={t.get('state')}"
                                  for t in status.get("tasks", []))
                lines.append(f"connector {c.name}: "
                             f"{status.get('connector', {}).get('state', 'absent')} [{tasks}]")
        return "\n".join(lines)

    def expect_ops(self, connector: connect.GeneratedConnector, topic: str, table: str,
                   expected: Mapping[Key, Sequence[str]], *,
                   timeout: float = WAIT_S) -> list[Record]:
        """Wait until the ops per key of ``table`` on ``topic`` are exactly ``expected``.

        A key that is not expected (say, another tenant's row) fails at once."""
        want = {k: list(v) for k, v in expected.items()}

        def settled(records: list[Record]) -> bool:
            got = ops_by_key(records)
            return got == want or bool(set(got) - set(want))

        records = self.events(connector, topic, table, settled, timeout=timeout,
                              expectation=f"ops {_fmt_ops(want)}")
        got = ops_by_key(records)
        unexpected = {k: v for k, v in got.items() if k not in want}
        assert not unexpected, (
            f"{connector.path}: unexpected keys for {table} on topic {topic}: "
            f"{_fmt_ops(unexpected)} (rows of another tenant, or not filtered?)")
        assert got == want, (f"{connector.path}: {table} on {topic}: expected "
                             f"{_fmt_ops(want)}, got {_fmt_ops(got)}")
        return records


def assert_valid(connect_url: str, connectors: Iterable[connect.GeneratedConnector]) -> None:
    """The worker's validate endpoint finds nothing wrong with any of them."""
    problems = connect.validate_all(connect_url, connectors)
    assert not problems, "validate endpoint reported:\n" + problems_text(problems)


def start_connectors(stack: Stack, connectors: Sequence[connect.GeneratedConnector], *,
                     timeout: float = 90.0,
                     wait: Iterable[connect.GeneratedConnector] | None = None) -> Running:
    """Create every connector, then wait until those in ``wait`` (default: all) are
    RUNNING: one rebalance wait for a batch."""
    created: list[connect.GeneratedConnector] = []
    try:
        for connector in connectors:
            try:
                stack.create(connector.name, connector.rest_config())
            except StackError as exc:
                raise AssertionError(f"{connector.path}: the worker refused it: {exc}") from None
            created.append(connector)
        deadline = time.monotonic() + timeout
        for connector in connectors if wait is None else wait:
            try:
                stack.wait_running(connector.name,
                                   timeout=max(5.0, deadline - time.monotonic()))
            except ConnectorFailedError as exc:
                raise AssertionError(f"{connector.path}: {exc}") from None
            except StackError as exc:
                raise AssertionError(f"{connector.path}: {exc}") from None
    except BaseException:
        with contextlib.suppress(Exception):
            stop_connectors(stack, created)
        raise
    return Running(stack, list(connectors))


def stop_connectors(stack: Stack, connectors: Iterable[connect.GeneratedConnector],
                 pg: localpg.LocalPostgres | None = None) -> None:
    """Delete the connectors, then drop their replication slots (when ``pg`` is given)."""
    connectors = list(connectors)
    errors: list[str] = []
    for connector in connectors:  # all at once: one rebalance instead of one each
        with contextlib.suppress(StackError, OSError):
            stack.request("DELETE", f"/connectors/{connector.name}")
    started = time.monotonic()
    for connector in connectors:
        try:
            stack.delete(connector.name)
            log.debug("deleted %s after %.2fs", connector.name, time.monotonic() - started)
        except StackError as exc:
            errors.append(f"{connector.path}: {exc}")
    if pg is not None:
        for connector in connectors:
            slot = connector.config.get("slot.name")
            if slot:
                drop_slot(pg, connector.config["database.dbname"], slot)
                log.debug("dropped slot %s after %.2fs", slot, time.monotonic() - started)
    if errors:
        raise StackError("; ".join(errors))


def drop_slot(pg: localpg.LocalPostgres, dbname: str, slot: str, timeout: float = 15.0) -> None:
    """Drop a logical slot once its walsender let go of it (bounded wait)."""
    deadline = time.monotonic() + timeout
    with contextlib.suppress(psycopg.OperationalError), pg.connect(dbname) as conn:
        while True:
            try:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) "
                             "FROM pg_replication_slots WHERE slot_name = %s", (slot,))
                return
            except psycopg.errors.ObjectInUse:
                if time.monotonic() > deadline:
                    raise
                conn.execute("SELECT pg_terminate_backend(active_pid) FROM "
                             "pg_replication_slots WHERE slot_name = %s AND active", (slot,))
                time.sleep(0.1)


def sources(connectors: Iterable[connect.GeneratedConnector]) -> list[connect.GeneratedConnector]:
    return [c for c in connectors if c.connector_class == SOURCE_CLASS]


def sinks(connectors: Iterable[connect.GeneratedConnector]) -> list[connect.GeneratedConnector]:
    return [c for c in connectors if c.connector_class == SINK_CLASS]


def sink_topics(bootstrap: str, sink: connect.GeneratedConnector) -> list[str]:
    """The topics a sink reads: its `topics`, or those on the brokers now that its
    `topics.regex` matches (Java's syntax, as far as generated patterns use it)."""
    if "topics" in sink.config:
        return sink.config["topics"].split(",")
    pattern = re.compile(sink.config["topics.regex"])
    return sorted(t for t in list_topics(bootstrap) if pattern.fullmatch(t))


# --------------------------------------------------------------------------- databases


#: the run instruction in every generated SQL file's header
_RUN_IN = re.compile(r"^--   psql -v ON_ERROR_STOP=1 -d (\S+) -f ", re.MULTILINE)
SINK_SQL = "sink-schemas.sql"


def apply_generated_sql(pg: localpg.LocalPostgres, sink: localpg.LocalPostgres, root: Path, *,
                        environment: str, sink_schemas: bool = True,
                        sources: bool = True, service: str = "*") -> list[str]:
    """Run every generated/sql/<service>/<environment>/*.sql (of ``service``, default
    all) as its header says: the source SQL in the source databases on ``pg``, the
    sink schemas (unless not ``sink_schemas``) in their sink database on ``sink``;
    the files run."""
    ran = []
    for path in sorted((root / GENERATED_DIR / "sql").glob(f"{service}/{environment}/*.sql")):
        if (path.name == SINK_SQL and not sink_schemas) or (
                path.name != SINK_SQL and not sources):
            continue
        text = path.read_text(encoding="utf-8")
        found = _RUN_IN.search(text)
        assert found, f"{path}: its header does not say which database it is for"
        server = sink if path.name == SINK_SQL else pg
        with server.connect(found.group(1)) as conn:
            conn.execute(text)
        ran.append(path.relative_to(root).as_posix())
    return ran


def recreate_database(pg: localpg.LocalPostgres, name: str, ddl: str) -> None:
    """Drop ``name`` if a previous run left it, create it and run ``ddl`` in it."""
    pg.drop_database(name)
    pg.create_database(name)
    with pg.connect(name) as conn:
        conn.execute(ddl)


@contextlib.contextmanager
def databases(pg: localpg.LocalPostgres, ddl_by_db: Mapping[str, str]) -> Iterator[None]:
    """Fresh databases for the duration of the block (dropped with their slots after)."""
    try:
        for name, ddl in ddl_by_db.items():
            recreate_database(pg, name, ddl)
        yield
    finally:
        if pg.running:
            for name in ddl_by_db:
                pg.drop_database(name)


def execute(pg: localpg.LocalPostgres, dbname: str, *statements: str) -> None:
    with pg.connect(dbname) as conn:
        for statement in statements:
            conn.execute(statement)


def resolve_collection_name(fmt: str, source: Mapping[str, Any], topic: str) -> str:
    """The JDBC sink's ``collection.name.format`` for one event (``${topic}``,
    ``${source.X}``); an unknown ``${source.X}`` is an AssertionError."""
    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name == "topic":
            return topic.replace(".", "_")
        field_name = name.removeprefix("source.")
        if not name.startswith("source.") or field_name not in source:
            raise AssertionError(
                f"collection.name.format {fmt!r}: ${{{name}}} is not a field of the event's "
                f"source block {sorted(source)}")
        return str(source[field_name])

    return re.sub(r"\$\{([^}]+)\}", one, fmt)

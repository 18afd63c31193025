"""Faults injected into running generated pipelines, on the real engine (`nox -s faults`).

While a bounded write load (inserts, updates, deletes) runs against the sources of every
pattern (db-shared with a schema per tenant, db-per-tenant with a sink per tenant, and
db-per-tenant with one sink for all tenants), each fault is injected
in turn: the Connect worker SIGKILLed, the source PostgreSQL restarted (fast and
immediate shutdown), a Kafka broker restarted, the sink database down for 30 s, a
rolling restart of the two-worker Connect cluster, and the connectors paused, stopped
and resumed the way Strimzi applies a KafkaConnector's ``state``. After each, with the
writes stopped, every target must equal its source: duplicates (replayed changes) are
allowed and counted, lost changes are not.

Nothing here restarts a connector or task by hand. A task that FAILS is restarted
only the way Strimzi's ``autoRestart`` (which every generated KafkaConnector enables)
would, with its backoff on a faster clock (:class:`AutoRestart`), and the table counts
those restarts: recovery comes from the generated settings alone.

The figures of each fault (recovery seconds, rows compared, duplicates on the topics,
restarts) are logged and written to ``$CDC_FAULTS_REPORT`` (default
``.e2e-logs/faults.md``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import BROKERS, ENVIRONMENT
from .kafka import group_lag, read_all
from .reconcile import Expectation, all_differences, wait_equal
from .scenarios import E2E_SINK, PG_SERVER_BLOCK, write_config
from .stack import REPO_ROOT, Stack, start_stack

pytestmark = pytest.mark.faults

log = logging.getLogger(__name__)

TENANT_SCHEMAS = ("t1", "t2")
TENANT_DBS = ("a", "b")
#: the load: per round, an insert, an update and (every 4th round) a delete in each
#: source table; bounded so that the suite's time is
ROUND_PAUSE_S = 0.05
#: writes go on this long after a fault ends: the pipeline must take them too
WRITE_AFTER_S = 3.0
RECOVERY_TIMEOUT_S = 240.0

GROUPS = f"""\
environments:
  nonprod:
    heartbeat_interval_ms: 1000
{E2E_SINK}server_groups:
  - name: fshared
    server_group_type: db-shared
    service: fshared
    isolation: schema
    server: {PG_SERVER_BLOCK}
    databases:
      - name: f_shared_db
        schemas: [{", ".join(TENANT_SCHEMAS)}]
  - name: ftenant
    server_group_type: db-per-tenant
    service: ftenant
    server: {PG_SERVER_BLOCK}
    databases:
""" + "".join(f"      - {{name: f_t_{t}, customer: {t}}}\n" for t in TENANT_DBS) + f"""\
  - name: fone
    server_group_type: db-per-tenant
    service: fone
    server: {PG_SERVER_BLOCK}
    databases:
""" + "".join(f"      - {{name: f_o_{t}, customer: {t}}}\n" for t in TENANT_DBS)

SERVICES = {
    "fshared": """\
        service: fshared
        server_group: fshared
        source:
          type: postgres
          tables:
            - {name: items, primary_key: id}
        """,
    "ftenant": """\
        service: ftenant
        server_group: ftenant
        source:
          type: postgres
          tables:
            - {schema: public, name: orders, primary_key: id}
        """,
    "fone": """\
        service: fone
        server_group: fone
        sinks: one-per-service
        source:
          type: postgres
          tables:
            - {schema: public, name: orders, primary_key: id}
        """,
}

TABLE_DDL = "(id int PRIMARY KEY, label text NOT NULL, n int NOT NULL DEFAULT 0)"


def source_ddl() -> dict[str, str]:
    shared = "\n".join(f"CREATE SCHEMA {s}; CREATE TABLE {s}.items {TABLE_DDL};"
                       f"INSERT INTO {s}.items SELECT g, 'seed', 0 FROM generate_series(1, 200) g;"
                       for s in TENANT_SCHEMAS)
    tenant = (f"CREATE TABLE public.orders {TABLE_DDL};"
              "INSERT INTO public.orders SELECT g, 'seed', 0 FROM generate_series(1, 200) g;")
    return {"f_shared_db": shared, **{f"{db}{t}": tenant for t in TENANT_DBS
                                      for db in ("f_t_", "f_o_")}}


#: pattern -> its service
PATTERNS = {"db-shared (schema per tenant)": "fshared", "db-per-tenant": "ftenant",
            "db-per-tenant, one sink": "fone"}


def expectations(service: str | None = None) -> list[Expectation]:
    """What the targets must hold: of one service, or of both."""
    out = [Expectation("fshared", "f_shared_db", f"{s}.items", "fshared", f"{s}.items", ("id",))
           for s in TENANT_SCHEMAS]
    out += [Expectation(service, f"{db}{t}", "public.orders", service, f"{t}.orders",
                        ("id",)) for t in TENANT_DBS
            for service, db in (("ftenant", "f_t_"), ("fone", "f_o_"))]
    return [e for e in out if service is None or e.sink_db == service]


#: (database, table) the writer writes
TARGETS = [("f_shared_db", f"{s}.items") for s in TENANT_SCHEMAS] + \
          [(f"{db}{t}", "public.orders") for t in TENANT_DBS for db in ("f_t_", "f_o_")]


@dataclass
class Writer:
    """Inserts, updates and deletes in every source table until stopped; rides out a
    source restart by reconnecting (a statement cut off by it may or may not have
    committed: the source is the truth either way)."""

    pg: localpg.LocalPostgres
    next_id: int
    stop: threading.Event = field(default_factory=threading.Event)
    statements: int = 0
    #: database -> statements a source restart cut off
    failed: dict[str, int] = field(default_factory=dict)
    error: BaseException | None = None

    def run(self) -> None:
        rng = random.Random(self.next_id)
        conns: dict[str, psycopg.Connection[tuple[object, ...]]] = {}
        try:
            while not self.stop.is_set():
                self.next_id += 1
                for db, table in TARGETS:
                    try:
                        conn = conns.get(db)
                        if conn is None or conn.closed:
                            conn = conns[db] = self.pg.connect(db)
                        self._round(conn, table, rng)
                    except psycopg.OperationalError:
                        self.failed[db] = self.failed.get(db, 0) + 1
                        with contextlib.suppress(Exception):
                            conns.pop(db).close()
                        time.sleep(0.2)
                time.sleep(ROUND_PAUSE_S)
        except BaseException as exc:
            self.error = exc
        finally:
            for conn in conns.values():
                with contextlib.suppress(Exception):
                    conn.close()

    def _round(self, conn: psycopg.Connection[tuple[object, ...]], table: str,
               rng: random.Random) -> None:
        n = self.next_id
        conn.execute(f"INSERT INTO {table} (id, label) VALUES (%s, 'live')", (n,))
        conn.execute(f"UPDATE {table} SET n = n + 1, label = 'updated' WHERE id = %s",
                     (rng.randint(1, n),))
        self.statements += 2
        if n % 4 == 0:
            conn.execute(f"DELETE FROM {table} WHERE id = %s", (rng.randint(1, n),))
            self.statements += 1


@dataclass
class Row:
    fault: str
    pattern: str
    fault_s: float
    recovered_s: float
    rows: int
    duplicates: int
    restarts: int
    failed_statements: int
    #: rows that differ between a target and its source once the sinks drained
    lost: int


#: Strimzi's autoRestart backoff runs in minutes; here a minute lasts this long
STRIMZI_MINUTE_S = 5.0


@dataclass
class AutoRestart:
    """What Strimzi's autoRestart does for a KafkaConnector with ``enabled: true``
    (AbstractConnectOperator): a FAILED connector or task is restarted
    (``restart?includeTasks=true&onlyFailed=true``) at once, and again while it keeps
    failing after n*n + n minutes, n the restarts so far (2, 6, 12, ... up to 60):
    here with a minute of :data:`STRIMZI_MINUTE_S`. Strimzi also waits for its next
    reconciliation (every 2 minutes by default) before it looks; here it looks every
    2 s."""

    stack: Stack
    names: list[str]
    restarts: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    seen: list[str] = field(default_factory=list)
    counts: dict[str, tuple[int, float]] = field(default_factory=dict)
    by_name: dict[str, int] = field(default_factory=dict)  # restarts of each connector

    def reset(self) -> None:
        """A new fault: every connector counts as stable again."""
        self.counts.clear()

    def run(self) -> None:
        while not self.stop.wait(2.0):
            for name in self.names:
                try:
                    status = self.stack.status(name)
                except Exception:  # the worker answering may be the one down
                    continue
                if status is None:
                    continue
                states = [status.get("connector", {}).get("state")]
                states += [t.get("state") for t in status.get("tasks", [])]
                count, last = self.counts.get(name, (0, 0.0))
                due = last + (count * count + count) * STRIMZI_MINUTE_S
                if "FAILED" not in states or time.monotonic() < due:
                    continue
                trace = next((t.get("trace", "") for t in status.get("tasks", [])
                              if t.get("state") == "FAILED"), "")
                self.seen.append(f"{name}: {trace.splitlines()[0] if trace else 'FAILED'}")
                with contextlib.suppress(Exception):
                    self.stack.request("POST", f"/connectors/{name}/restart"
                                               "?includeTasks=true&onlyFailed=true")
                    self.restarts += 1
                    self.by_name[name] = self.by_name.get(name, 0) + 1
                self.counts[name] = (count + 1, time.monotonic())


def topic_duplicates(stack: Stack, topics: list[str]) -> int:
    """Change events on the topics more than once: the same key, operation and source
    LSN (a change replayed after a crash, which at-least-once delivery allows)."""
    seen: set[tuple[str, str, object, object]] = set()
    duplicates = 0
    for record in read_all(stack.bootstrap, topics):
        value = record.value_payload if hasattr(record, "value_payload") else None
        if not isinstance(value, dict) or not isinstance(value.get("source"), dict):
            continue
        source = value["source"]
        if source.get("snapshot") not in (None, "false", False):
            continue
        ident = (record.topic, json.dumps(record.key_payload, sort_keys=True),
                 value.get("op"), source.get("lsn"))
        if ident in seen:
            duplicates += 1
        seen.add(ident)
    return duplicates


@dataclass
class Faults:
    stack: Stack
    source: localpg.LocalPostgres
    sink: localpg.LocalPostgres
    connectors: list[connect.GeneratedConnector]
    restarter: AutoRestart
    root: Path
    rows: list[Row] = field(default_factory=list)
    next_id: int = 1000
    duplicates_before: dict[str, int] = field(default_factory=dict)

    def of(self, service: str) -> list[connect.GeneratedConnector]:
        return [c for c in self.connectors if c.name.split("-")[1] == service]

    def topics(self, service: str) -> list[str]:
        return sorted({t for c in pl.sinks(self.of(service))
                       for t in pl.sink_topics(self.stack.bootstrap, c)})

    def lag(self, service: str) -> int:
        """Records the service's sinks have not consumed yet (their groups' lag)."""
        return sum(group_lag(self.stack.bootstrap, f"connect-{c.name}",
                             pl.sink_topics(self.stack.bootstrap, c))
                   for c in pl.sinks(self.of(service)))

    def run(self, name: str, inject: Callable[[], None]) -> list[Row]:
        """Writes going on, `inject` the fault (it returns once the faulty part is back),
        go on writing a little, stop, and wait for each pattern's targets to equal its
        sources: a row per pattern."""
        writer = Writer(self.source, self.next_id)
        thread = threading.Thread(target=writer.run, name=f"writer-{name}", daemon=True)
        self.restarter.reset()
        restarts_before = dict(self.restarter.by_name)
        thread.start()
        try:
            time.sleep(2.0)
            started = time.monotonic()
            inject()
            ended = time.monotonic()
            time.sleep(WRITE_AFTER_S)
        finally:
            writer.stop.set()
            thread.join(30)
        self.next_id = writer.next_id + 1
        assert writer.error is None, writer.error
        rows = []
        for pattern, service in PATTERNS.items():
            wanted = expectations(service)
            with self.stack.keep_logs_on_failure(f"fault {name}"):
                drained = wait_equal(self.source, self.sink, wanted,
                                     lag=lambda service=service: self.lag(service),  # type: ignore[misc]
                                     timeout=RECOVERY_TIMEOUT_S, what=f"{pattern} after {name}")
            # (the second pattern drained meanwhile: its time is at most this)
            recovered = time.monotonic() - ended
            # once more, with the sinks drained: what differs now was lost (none may be)
            lost = len(all_differences(self.source, self.sink, wanted))
            total = topic_duplicates(self.stack, self.topics(service))
            names = [c.name for c in self.of(service)]
            restarts = sum(self.restarter.by_name.get(n, 0) - restarts_before.get(n, 0)
                           for n in names)
            cut_off = sum(n for db, n in writer.failed.items()
                          if db in {e.source_db for e in wanted})
            row = Row(name, pattern, ended - started, recovered, drained.rows_compared,
                      total - self.duplicates_before.get(service, 0), restarts, cut_off, lost)
            self.duplicates_before[service] = total
            self.rows.append(row)
            rows.append(row)
            log.warning("fault %s: %s", name, row)
        assert all(row.lost == 0 for row in rows), rows
        return rows

    def all_running(self, timeout: float = 120.0) -> None:
        for connector in self.connectors:
            self.stack.wait_running(connector.name, timeout=timeout)


def write_services(root: Path, state: str | None) -> None:
    """The services, with `state:` when given, and generate."""
    services = {name: textwrap.dedent(text) for name, text in SERVICES.items()}
    if state is not None:
        services = {name: text.replace("\nsource:", f"\nstate: {state}\nsource:", 1)
                    for name, text in services.items()}
    write_config(root, groups=GROUPS, services=services)


#: what Strimzi's connector operator does for a KafkaConnector's spec.state, given the
#: connector's state in Connect: the REST call, and the state it leads to
STRIMZI_STATE = {"paused": ("/pause", "PAUSED"), "stopped": ("/stop", "STOPPED"),
                 "running": ("/resume", "RUNNING")}


def reconcile_state(stack: Stack, root: Path, timeout: float = 60.0) -> None:
    """Apply each generated KafkaConnector's ``spec.state`` as Strimzi's operator does,
    and wait until Connect reports it."""
    for connector in connect.load_generated(root, environment=ENVIRONMENT):
        doc = yaml.safe_load((root / connector.path).read_text())
        wanted = (doc.get("spec") or {}).get("state", "running")
        path, reported = STRIMZI_STATE[wanted]
        current = (stack.status(connector.name) or {}).get("connector", {}).get("state")
        if current != reported:
            result = stack.request("PUT", f"/connectors/{connector.name}{path}")
            assert result.status in (200, 202, 204), result
        deadline = time.monotonic() + timeout
        while True:
            status = stack.status(connector.name) or {}
            states = {status.get("connector", {}).get("state")}
            states |= {t.get("state") for t in status.get("tasks", [])}
            if states == {reported} or (reported == "STOPPED" and
                                        status.get("connector", {}).get("state") == "STOPPED"):
                break
            assert time.monotonic() < deadline, f"{connector.name}: {status}"
            time.sleep(0.2)


def write_report(rows: list[Row]) -> Path:
    path = Path(os.environ.get("CDC_FAULTS_REPORT") or REPO_ROOT / ".e2e-logs" / "faults.md")
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["| fault | pattern | fault lasted (s) | recovered (s) | rows compared "
             "| duplicates on topics | autoRestart restarts | writes cut off | lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r.fault} | {r.pattern} | {r.fault_s:.1f} | {r.recovered_s:.1f} | {r.rows} "
              f"| {r.duplicates} | {r.restarts} | {r.failed_statements} | {r.lost} |"
              for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Faults]:
    # committed means durable, as on a production server (the test default is off)
    durable = {"wal_level": "logical", "max_replication_slots": "20",
               "max_wal_senders": "20", "synchronous_commit": "on"}
    with localpg.start(settings=durable) as source, localpg.start() as sink, \
            contextlib.ExitStack() as cleanup:
        env = pl.worker_env(source, sink)
        mp = cleanup.enter_context(pytest.MonkeyPatch.context())
        for name, value in env.items():
            mp.setenv(name, value)
        root = tmp_path_factory.mktemp("faults") / "repo"
        write_services(root, None)
        stack = cleanup.enter_context(start_stack(tmp_path_factory.mktemp("faults-stack"),
                                                  env=env, brokers=BROKERS, workers=2))
        cleanup.enter_context(pl.databases(source, source_ddl()))
        cleanup.enter_context(pl.databases(sink, dict.fromkeys(SERVICES, "")))
        pl.apply_generated_sql(source, sink, root, environment=ENVIRONMENT)
        connectors = connect.load_generated(root, environment=ENVIRONMENT)
        with stack.keep_logs_on_failure("faults start"):
            pl.start_connectors(stack, connectors)
        restarter = AutoRestart(stack, [c.name for c in connectors])
        thread = threading.Thread(target=restarter.run, name="autorestart", daemon=True)
        thread.start()
        state = Faults(stack, source, sink, connectors, restarter, root)
        try:
            wait_equal(source, sink, expectations(), lag=lambda: 0, timeout=120,
                       what="the initial snapshot")
            yield state
        finally:
            restarter.stop.set()
            thread.join(10)
            where = write_report(state.rows)
            log.warning("faults report in %s (autoRestart saw: %s)", where,
                        restarter.seen or "nothing failed")


def busiest_worker(stack: Stack, names: list[str]) -> int:
    """The index of the worker running most of the tasks."""
    counts = [0] * len(stack.workers)
    for name in names:
        status = stack.status(name) or {}
        for task in status.get("tasks", []):
            port = str(task.get("worker_id", "")).rsplit(":", 1)[-1]
            for index, url in enumerate(stack.worker_urls):
                if url.endswith(f":{port}"):
                    counts[index] += 1
    return max(range(len(counts)), key=counts.__getitem__)


def test_worker_killed(faults: Faults) -> None:
    stack = faults.stack

    def inject() -> None:
        index = busiest_worker(stack, [c.name for c in faults.connectors])
        stack.workers[index].kill()
        time.sleep(1.0)
        stack.start_worker(index)

    faults.run("Connect worker SIGKILL, restarted", inject)


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_source_database_restarted(faults: Faults, mode: str) -> None:
    faults.run(f"source PostgreSQL restart ({mode} shutdown)",
               lambda: faults.source.restart(mode=mode))  # type: ignore[arg-type]


def test_broker_restarted(faults: Faults) -> None:
    stack = faults.stack

    def inject() -> None:
        stack.brokers[0].stop()
        time.sleep(1.0)
        stack.start_broker(0)

    faults.run("Kafka broker restart (1 of 3)", inject)


def test_sink_database_down_for_30_seconds(faults: Faults) -> None:
    faults.run("sink PostgreSQL down 30 s", lambda: faults.sink.restart(down_for=30.0))


def test_rolling_restart_of_two_workers(faults: Faults) -> None:
    stack = faults.stack

    def inject() -> None:
        for index in range(len(stack.workers)):
            stack.workers[index].stop()
            stack.start_worker(index)
            faults.all_running()

    faults.run("rolling restart of 2 Connect workers", inject)


def test_paused_stopped_and_resumed_through_the_generated_state(faults: Faults) -> None:
    """services/<service>.yaml `state:` -> KafkaConnector spec.state -> what Strimzi
    does with it; writes go on meanwhile and must all arrive after the resume."""
    stack, root = faults.stack, faults.root

    def inject() -> None:
        for state in ("paused", "stopped"):
            write_services(root, state)
            reconcile_state(stack, root)
            time.sleep(3.0)  # nothing moves; the writes wait in the WAL
        write_services(root, None)
        reconcile_state(stack, root)

    faults.run("paused, stopped, resumed (spec.state)", inject)

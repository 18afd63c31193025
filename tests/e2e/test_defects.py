"""Each data fix of the generator, taken out again, loses or breaks data on the real
engine: the proof that the setting is what makes the whole-pipeline tests pass.

Every case generates a small config with the built-in templates minus one fix (or
skips one generated SQL file), runs its source and sink beside the others, applies the
operation the fix is for, and shows the damage: the sinks drained and a target still
differs from its source, or the sink task failed with the database's reason. With the
fix in place the same operations pass (tests/e2e/test_pipelines.py).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import cdc_generator
from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, Pipelines
from .kafka import group_lag
from .reconcile import Difference, Expectation, all_differences, wait_equal
from .scenarios import DOCS_DDL, docs_rows, write_config
from .scenarios import PG_SERVER_BLOCK as SERVER
from .stack import Stack

pytestmark = pytest.mark.e2e

BUILTIN = Path(cdc_generator.__file__).parent / "templates"
SOURCE, SINK = "source-pipeline.yaml", "sink-pipeline.yaml"

SINK_BLOCK = ('{host: "${CDC_E2E_SINK_HOST}", port: "${CDC_E2E_SINK_PORT}", '
              'user: "${CDC_E2E_SINK_USER}", password: "${CDC_E2E_SINK_PASSWORD}"}')


@dataclass
class Case:
    """One fix taken out: ``cut`` removes lines from a built-in template."""

    name: str
    template: str
    cut: tuple[str, ...]
    customer: str | None = None  # db-per-tenant with this customer, else db-shared
    run_sink_sql: bool = True
    db: str = ""
    root: Path = field(default=Path())

    @property
    def service(self) -> str:
        return f"e2ed{self.name.replace('-', '')}"

    def templates(self) -> dict[str, str]:
        out = {}
        for name in (SOURCE, SINK):
            text = (BUILTIN / name).read_text()
            if name == self.template:
                for line in self.cut:
                    assert line in text, f"{name} no longer has {line!r}"
                    text = text.replace(line + "\n", "")
            out[name] = text
        return out

    def groups(self) -> str:
        kind = "db-per-tenant" if self.customer else "db-shared"
        database = (f"{{name: {self.db}, customer: {self.customer}}}" if self.customer
                    else f"{{name: {self.db}}}")
        return (f"environments:\n  nonprod:\n    heartbeat_interval_ms: 1000\n"
                f"    sink: {SINK_BLOCK}\n"
                f"server_groups:\n  - name: {self.service}\n"
                f"    server_group_type: {kind}\n    service: {self.service}\n"
                f"    server: {SERVER}\n    databases:\n      - {database}\n")

    def services(self) -> dict[str, str]:
        return {self.service: (
            f"service: {self.service}\nserver_group: {self.service}\n"
            "source:\n  type: postgres\n  tables:\n"
            "    - {schema: public, name: docs, primary_key: id}\n")}

    def expectation(self) -> Expectation:
        target = f"{self.customer}.docs" if self.customer else "public.docs"
        return Expectation(self.name, self.db, "public.docs", self.service, target, ("id",))


CASES = {
    # without the reselect post processor, an update that leaves TOASTed values alone
    # writes Debezium's placeholder over them
    "toast": Case("toast", SOURCE, (
        "    post.processors: reselector",
        "    post.processors.reselector.type: "
        "io.debezium.processors.reselect.ReselectColumnsPostProcessor",
        '    post.processors.reselector.reselect.unavailable.values: "true"',
        '    post.processors.reselector.reselect.null.values: "false"',
        '    post.processors.reselector.reselect.use.event.key: "true"')),
    # Debezium skips TRUNCATE by default (skipped.operations=t)
    "truncate-source": Case("truncate-source", SOURCE, ("    skipped.operations: none",)),
    # the JDBC sink ignores a TRUNCATE event by default (truncate.enabled=false)
    "truncate-sink": Case("truncate-sink", SINK, ('    truncate.enabled: "true"',)),
    # a customer id that is a keyword: the unquoted schema name is a syntax error
    "unquoted": Case("unquoted", SINK, ('    quote.identifiers: "true"',), customer="user"),
    # the sink creates tables, never schemas: without sink-schemas.sql it cannot write
    "no-sink-schemas": Case("no-sink-schemas", SINK, (), customer="acme",
                            run_sink_sql=False),
}
for _case in CASES.values():
    _case.db = f"e2e_d_{_case.name.replace('-', '_')}"
#: the cases whose sink task fails before the operation (the toast one fails on it)
FAILING = {"unquoted", "no-sink-schemas"}


@dataclass
class Running:
    stack: Stack
    source_pg: localpg.LocalPostgres
    sink_pg: localpg.LocalPostgres
    connectors: dict[str, list[connect.GeneratedConnector]]

    def settled(self, case: Case, timeout: float = 60.0) -> list[Difference]:
        """The differences left once the pipeline carried everything written so far:
        the source confirmed the WAL up to now (it confirms only what Kafka holds), and
        the sink consumed every record."""
        source = pl.sources(self.connectors[case.name])[0]
        sink = pl.sinks(self.connectors[case.name])[0]
        topics = pl.sink_topics(self.stack.bootstrap, sink)
        deadline = time.monotonic() + timeout
        with self.source_pg.connect(case.db) as conn:
            (now,) = conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone() or ("",)
            while True:
                row = conn.execute(
                    "SELECT confirmed_flush_lsn >= %s::pg_lsn FROM pg_replication_slots "
                    "WHERE slot_name = %s", (now, source.config["slot.name"])).fetchone()
                if row and row[0]:
                    break
                assert time.monotonic() < deadline, f"{source.path}: the slot never got to {now}"
                time.sleep(0.25)
        while group_lag(self.stack.bootstrap, f"connect-{sink.name}", topics) > 0:
            failed = self.failed_task(sink)
            assert failed is None, f"{sink.path}: the sink task failed:\n{failed}"
            assert time.monotonic() < deadline, f"{sink.path}: the sink never caught up"
            time.sleep(0.25)
        time.sleep(1.0)  # a record consumed is written before its offset is committed
        return all_differences(self.source_pg, self.sink_pg, [case.expectation()])

    def failed_task(self, connector: connect.GeneratedConnector) -> str | None:
        """The trace of a FAILED task of `connector`, or None."""
        status = self.stack.status(connector.name) or {}
        for task in status.get("tasks", []):
            if task.get("state") == "FAILED":
                return str(task.get("trace", ""))
        return None

    def sink_failure(self, case: Case, timeout: float = 60.0) -> str:
        """The trace of the case's failed sink task."""
        sink = pl.sinks(self.connectors[case.name])[0]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            trace = self.failed_task(sink)
            if trace is not None:
                return trace
            time.sleep(0.25)
        raise AssertionError(f"{sink.path}: the sink task did not fail within {timeout:g} s")


@pytest.fixture(scope="module")
def running(pipelines: Pipelines, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Every case's source and sink, created as one batch next to the session's
    pipelines (which must keep running: `pipelines` is only a dependency here)."""
    stack, pg, sink = pipelines.running.stack, pipelines.source_pg, pipelines.sink_pg
    ddl = {c.db: DOCS_DDL.format(schema="public") + docs_rows("public", range(1, 4))
           for c in CASES.values()}
    with contextlib.ExitStack() as cleanup:
        cleanup.enter_context(pl.databases(pg, ddl))
        cleanup.enter_context(pl.databases(sink, {c.service: "" for c in CASES.values()}))
        connectors: dict[str, list[connect.GeneratedConnector]] = {}
        for case in CASES.values():
            case.root = write_config(tmp_path_factory.mktemp(case.name) / "repo",
                                     templates=case.templates(), groups=case.groups(),
                                     services=case.services())
            pl.apply_generated_sql(pg, sink, case.root, environment=ENVIRONMENT,
                                   sink_schemas=case.run_sink_sql)
            connectors[case.name] = connect.load_generated(case.root, environment=ENVIRONMENT)
        every = [c for cs in connectors.values() for c in cs]
        cleanup.callback(pl.stop_connectors, stack, every, pg)
        with stack.keep_logs_on_failure("defect cases"):
            # the sinks that must fail never run; the rest must, before the operation
            healthy = [c for case in CASES.values() if case.name not in FAILING
                       for c in connectors[case.name]]
            pl.start_connectors(stack, every, wait=[*pl.sources(every), *healthy])
            for case in CASES.values():  # the snapshot is in before the operation
                if case.name not in FAILING:
                    wait_equal(pg, sink, [case.expectation()], lag=lambda: 0, timeout=60,
                               what=f"{case.name} snapshot")
        yield Running(stack, pg, sink, connectors)


def _docs(running: Running, case: Case, sql: str) -> None:
    pl.execute(running.source_pg, case.db, sql)


def test_without_reselect_an_unchanged_toast_value_is_overwritten(running: Running) -> None:
    """The update carries the placeholder for both TOASTed columns: the sink writes it
    into the text column and the jsonb one refuses it, which stops the sink."""
    case = CASES["toast"]
    _docs(running, case, "UPDATE public.docs SET title = 'edited' WHERE id = 2")
    trace = running.sink_failure(case)
    assert "('__debezium_unavailable_value'),cast(('__debezium_unavailable_value') as jsonb)" \
        in trace, trace[-3000:]
    assert "invalid input syntax for type json" in trace, trace[-3000:]


@pytest.mark.parametrize("name", ["truncate-source", "truncate-sink"])
def test_without_truncate_on_both_ends_the_target_keeps_its_rows(running: Running,
                                                                 name: str) -> None:
    case = CASES[name]
    _docs(running, case, "TRUNCATE public.docs")
    diffs = running.settled(case)
    assert sorted(d.key for d in diffs) == [(1,), (2,), (3,)], diffs
    assert all(d.source_row is None for d in diffs)  # rows gone from the source only


def test_without_quoting_a_keyword_customer_cannot_be_written(running: Running) -> None:
    trace = running.sink_failure(CASES["unquoted"])
    assert "user.docs" in trace, trace[-2000:]


def test_without_the_sink_schemas_the_sink_cannot_write(running: Running) -> None:
    trace = running.sink_failure(CASES["no-sink-schemas"])
    assert "Could not find table: acme.docs" in trace, trace[-2000:]

"""Day-2 changes to running pipelines, on the real engine, with `plan` and `apply`.

One config, changed the way a pull request would while writes go on:

* db-shared (schema isolation): a table with 10,000 existing rows added, and a tenant
  schema added;
* db-per-tenant: a filtered table added, a tenant database added, a tenant removed;
  the same with one sink for all tenants (sinks: one-per-service), which picks the
  new tenant's topics up by its topics.regex, its config unchanged.

The new manifests are deployed as Argo CD would (the connectors' configs replaced,
created, deleted through the Connect REST API), then `apply --connect-url --prune`
prepares the databases, sends the backfills and drops what the removed tenant left.
Every target then equals its source, every existing row and every change made
meanwhile included; a second apply does nothing and the plan is empty. Last, a
quiet tenant database's slot keeps moving while another database takes writes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cdc_generator import cli, connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, Pipelines
from .reconcile import Expectation, wait_equal
from .scenarios import E2E_SINK, PG_SERVER_BLOCK, write_config
from .stack import Stack

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)


def groups(schemas: list[str], tenants: list[str]) -> str:
    return f"""\
environments:
  nonprod:
    heartbeat_interval_ms: 1000
{E2E_SINK}server_groups:
  - name: d2shared
    server_group_type: db-shared
    service: d2shared
    isolation: schema
    server: {PG_SERVER_BLOCK}
    databases:
      - name: d2_shared_db
        schemas: [{", ".join(schemas)}]
  - name: d2tenant
    server_group_type: db-per-tenant
    service: d2tenant
    server: {PG_SERVER_BLOCK}
    databases:
""" + "".join(f"      - {{name: d2_t_{t}, customer: {t}}}\n" for t in tenants) + f"""\
  - name: d2one
    server_group_type: db-per-tenant
    service: d2one
    server: {PG_SERVER_BLOCK}
    databases:
""" + "".join(f"      - {{name: d2_o_{t}, customer: {t}}}\n" for t in tenants)


def services(grown: bool) -> dict[str, str]:
    extra = "    - {name: extra, primary_key: id}\n" if grown else ""
    notes = ('    - {schema: public, name: notes, primary_key: id,\n'
             '       filter: "owner = \'{{CUSTOMER_ID}}\'"}\n') if grown else ""
    return {
        "d2shared": ("service: d2shared\nserver_group: d2shared\nsource:\n  type: postgres\n"
                     "  tables:\n    - {name: items, primary_key: id}\n" + extra),
        **{name: (f"service: {name}\nserver_group: {name}\n{sinks}source:\n  type: postgres\n"
                  "  tables:\n    - {schema: public, name: orders, primary_key: id}\n" + notes)
           for name, sinks in (("d2tenant", ""), ("d2one", "sinks: one-per-service\n"))},
    }


BACKFILLED_ROWS = 10_000


def shared_ddl() -> str:
    return "\n".join(f"""
CREATE SCHEMA {s};
CREATE TABLE {s}.items (id int PRIMARY KEY, label text);
INSERT INTO {s}.items SELECT n, '{s} ' || n FROM generate_series(1, 50) n;
CREATE TABLE {s}.extra (id int PRIMARY KEY, payload text, touched int NOT NULL DEFAULT 0);
INSERT INTO {s}.extra SELECT n, md5(n::text) FROM generate_series(1, {BACKFILLED_ROWS}) n;
""" for s in ("t1", "t2"))


def tenant_ddl(me: str) -> str:
    return f"""
CREATE TABLE public.orders (id int PRIMARY KEY, item text);
INSERT INTO public.orders SELECT n, '{me} ' || n FROM generate_series(1, 20) n;
CREATE TABLE public.notes (id int PRIMARY KEY, owner text NOT NULL, body text);
ALTER TABLE public.notes REPLICA IDENTITY FULL;
INSERT INTO public.notes SELECT n, CASE WHEN n % 2 = 0 THEN '{me}' ELSE 'other' END, 'n' || n
  FROM generate_series(1, 300) n;
"""


def expectations(schemas: list[str], tenants: list[str], grown: bool) -> list[Expectation]:
    out = [Expectation("d2shared", "d2_shared_db", f"{s}.items", "d2shared", f"{s}.items",
                       ("id",)) for s in schemas]
    if grown:
        out += [Expectation("d2shared", "d2_shared_db", f"{s}.extra", "d2shared",
                            f"{s}.extra", ("id",)) for s in schemas]
    for service, db in (("d2tenant", "d2_t_"), ("d2one", "d2_o_")):
        for t in tenants:
            out.append(Expectation(service, f"{db}{t}", "public.orders", service,
                                   f"{t}.orders", ("id",)))
            if grown:
                out.append(Expectation(service, f"{db}{t}", "public.notes", service,
                                       f"{t}.notes", ("id",), f"owner = '{t}'"))
    return out


@dataclass
class Writer:
    """Writes into the source tables until stopped: what the backfills must not lose."""

    pg: localpg.LocalPostgres
    stop: threading.Event = field(default_factory=threading.Event)
    rows: int = 0
    error: BaseException | None = None

    def run(self) -> None:
        try:
            with self.pg.connect("d2_shared_db") as shared, self.pg.connect("d2_t_a") as a, \
                    self.pg.connect("d2_o_a") as one_a:
                n = 1000
                while not self.stop.is_set():
                    n += 1
                    shared.execute("INSERT INTO t1.items VALUES (%s, 'live')", (n,))
                    shared.execute("INSERT INTO t2.items VALUES (%s, 'live')", (n,))
                    shared.execute("UPDATE t1.extra SET touched = touched + 1, payload = 'w' "
                                   "WHERE id = %s", (n % BACKFILLED_ROWS + 1,))
                    shared.execute("INSERT INTO t2.extra (id, payload) VALUES (%s, 'new')",
                                   (BACKFILLED_ROWS + n,))
                    a.execute("INSERT INTO public.notes VALUES (%s, 'a', 'live')", (n,))
                    a.execute("UPDATE public.orders SET item = 'changed' WHERE id = %s",
                              (n % 20 + 1,))
                    one_a.execute("INSERT INTO public.notes VALUES (%s, 'a', 'live')", (n,))
                    one_a.execute("UPDATE public.orders SET item = 'changed' WHERE id = %s",
                                  (n % 20 + 1,))
                    self.rows += 8
                    time.sleep(0.02)
        except BaseException as exc:
            self.error = exc


def cli_json(root: Path, *args: str) -> tuple[int, dict[str, object]]:
    with contextlib.redirect_stdout(out := _Capture()):
        code = cli.main([*args, "--root", str(root), "--format", "json"])
    return code, json.loads(out.text)


class _Capture:
    def __init__(self) -> None:
        self.text = ""

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


SERVICES = ("d2shared", "d2tenant", "d2one")


def each_service(root: Path, command: str, *extra: str) -> tuple[int, list[dict[str, str]]]:
    """`command` (plan or apply) per service of this config, so that what other tests'
    pipelines on the same server hold is none of its business: the worst exit code,
    and the actions of all."""
    worst, found = 0, []
    for service in SERVICES:
        code, payload = cli_json(root, command, "--environment", ENVIRONMENT,
                                 "--service", service, *extra)
        result = payload["result"]
        assert isinstance(result, dict), payload
        worst = max(worst, code)
        found += result["actions"]
    return worst, found


def actions(found: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(a["action"], a.get("connector", ""), a["object"]) for a in found]


def not_done(found: list[dict[str, str]]) -> list[dict[str, str]]:
    return [a for a in found if a.get("status") != "done"]


def write(root: Path, schemas: list[str], tenants: list[str], grown: bool) -> None:
    write_config(root, groups=groups(schemas, tenants), services=services(grown))


@pytest.fixture(scope="module")
def day2(pipelines: Pipelines, tmp_path_factory: pytest.TempPathFactory,
         monkeypatch_module: pytest.MonkeyPatch) -> Iterator[tuple[Stack, Path]]:
    stack, pg, sink = pipelines.running.stack, pipelines.source_pg, pipelines.sink_pg
    for name, value in pl.worker_env(pg, sink).items():
        monkeypatch_module.setenv(name, value)  # plan/apply connect as the worker does
    root = tmp_path_factory.mktemp("day2") / "repo"
    write(root, ["t1"], ["a", "b"], grown=False)
    ddl = {"d2_shared_db": shared_ddl(),
           **{f"{db}{t}": tenant_ddl(t) for t in "abc" for db in ("d2_t_", "d2_o_")}}
    with pl.databases(pg, ddl), pl.databases(sink, dict.fromkeys(SERVICES, "")):
        pl.apply_generated_sql(pg, sink, root, environment=ENVIRONMENT, sources=False)
        code, applied = each_service(root, "apply")  # the source side is apply's
        assert code == 0, applied
        first = connect.load_generated(root, environment=ENVIRONMENT)
        running = {c.name for c in first}
        with stack.keep_logs_on_failure("day2"):
            pl.start_connectors(stack, first)
        try:
            wait_equal(pg, sink, expectations(["t1"], ["a", "b"], False),
                       lag=lambda: 0, timeout=90, what="day-2 start")
            yield stack, root
        finally:
            now = set(stack.connectors()) & (running | {"source-d2tenant-c", "sink-d2tenant-c",
                                                        "source-d2one-c"})
            for name in now:
                with contextlib.suppress(Exception):
                    stack.delete(name)
            with pg.connect() as conn:
                conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM "
                             "pg_replication_slots WHERE slot_name LIKE 'cdc_d2%' AND NOT active")


def _where_are_they(stack: Stack, exc: AssertionError) -> None:
    """Say whether the rows missing in t1.items reached their topic (the source's
    side) or not: a note on the failure."""
    import re

    from .kafka import read_all

    missing = {int(m) for m in re.findall(r"t1\.items: key \{'id': (\d+)\} missing", str(exc))}
    if not missing:
        return
    records = read_all(stack.bootstrap, ["cdc.d2shared.items"])
    where = {r.key_payload.get("id"): (r.partition, r.offset) for r in records
             if isinstance(r.key_payload, dict) and r.key_payload.get(
                 "__dbz__physicalTableIdentifier") == "t1"}
    found = sorted(where[k] for k in missing if k in where)
    exc.add_note(f"of {len(missing)} rows missing in t1.items, "
                 f"{len(found)} are on topic cdc.d2shared.items at {found[:3]}..{found[-3:]}")


def wait_backfilled(sink: localpg.LocalPostgres, minimum: dict[tuple[str, str, int], int], *,
                    timeout: float) -> float:
    """Seconds until each (database, table, highest id) of the targets holds at least its
    rows with ids up to that one."""
    started = time.monotonic()
    counts: dict[tuple[str, str, int], int] = {}
    while time.monotonic() - started < timeout:
        for (db, table, top), want in minimum.items():
            if counts.get((db, table, top), 0) >= want:
                continue
            with sink.connect(db) as conn:
                found = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
                if found and found[0]:
                    row = conn.execute(f"SELECT count(*) FROM {table} WHERE id <= %s",
                                       (top,)).fetchone()
                    counts[db, table, top] = row[0] if row else 0
        if all(counts.get(k, 0) >= v for k, v in minimum.items()):
            return time.monotonic() - started
        time.sleep(1)
    raise AssertionError(f"backfills not in the targets after {timeout:.0f}s: have {counts}, "
                         f"want at least {minimum}")


def deploy_and_apply(stack: Stack, root: Path, old: dict[str, connect.GeneratedConnector],
                     new: dict[str, connect.GeneratedConnector]) -> None:
    """What Argo CD does with the merged manifests (replace, create, prune), and apply."""
    url = ("--connect-url", stack.connect_url)
    for name in sorted(old.keys() - new.keys()):
        stack.delete(name)
    for name in sorted(new.keys() & old.keys()):
        stack.put_config(name, new[name].rest_config())
    code, applied = each_service(root, "apply", *url, "--prune")
    pl.start_connectors(stack, [new[n] for n in sorted(new.keys() - old.keys())])
    # a connector may still be restarting with its new table list: apply again, as a
    # CI job retrying would
    deadline = time.monotonic() + 90
    while not_done(applied) and time.monotonic() < deadline:
        time.sleep(1)
        code, applied = each_service(root, "apply", *url, "--prune")
    assert not not_done(applied), not_done(applied)
    assert code == 0


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def _check_plan(planned: list[dict[str, str]], old: dict[str, connect.GeneratedConnector],
                new: dict[str, connect.GeneratedConnector]) -> None:
    """What `plan` lists for the change, and what the one sink for all tenants gets."""
    planned_actions = actions(planned)
    assert ("backfill-table", "source-d2shared", "t2.extra") in planned_actions
    assert ("backfill-table", "source-d2tenant-a", "public.notes") in planned_actions
    assert ("create-publication", "source-d2tenant-c", "cdc_d2tenant_c_nonprod") \
        in planned_actions
    assert ("drop-slot", "", "cdc_d2tenant_b_nonprod") in planned_actions
    assert ("create-publication", "source-d2one-c", "cdc_d2one_c_nonprod") \
        in planned_actions
    assert ("drop-slot", "", "cdc_d2one_b_nonprod") in planned_actions
    # one sink for all tenants: tenant c comes with no sink of its own, and the
    # sink's config changes only by the table added (notes)
    assert "sink-d2one-c" not in new
    before, after = old["sink-d2one"].rest_config(), new["sink-d2one"].rest_config()
    assert {k for k in before.keys() | after.keys()
            if before.get(k) != after.get(k)} == {"topics.regex"}
    assert after["topics.regex"].endswith(r"\.[^.]+\.(notes|orders)")
    backfills = [a for a in planned if a["action"] == "backfill-table"]
    assert all("once the connector runs with it" in a["note"] for a in backfills)


def test_add_tables_schema_and_tenant_remove_a_tenant(day2: tuple[Stack, Path],
                                                      pipelines: Pipelines) -> None:
    stack, root = day2
    pg, sink = pipelines.source_pg, pipelines.sink_pg
    writer = Writer(pg)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    try:
        old = {c.name: c for c in connect.load_generated(root, environment=ENVIRONMENT)}
        write(root, ["t1", "t2"], ["a", "c"], grown=True)
        new = {c.name: c for c in connect.load_generated(root, environment=ENVIRONMENT)}
        pl.apply_generated_sql(pg, sink, root, environment=ENVIRONMENT, sources=False)
        url = ("--connect-url", stack.connect_url)
        code, planned = each_service(root, "plan", *url)
        assert code == 1
        _check_plan(planned, old, new)

        started = time.monotonic()
        deploy_and_apply(stack, root, old, new)
        # Equality needs the writes to stop (rows always in flight otherwise): keep
        # writing until every backfill has reached the target, then stop and compare.
        # (the rows that existed before: the writer adds others to some of these tables)
        backfilled = wait_backfilled(sink, {
            ("d2shared", "t1.extra", BACKFILLED_ROWS): BACKFILLED_ROWS,
            ("d2shared", "t2.extra", BACKFILLED_ROWS): BACKFILLED_ROWS,
            ("d2shared", "t2.items", 50): 50, ("d2tenant", "a.notes", 300): 150,
            ("d2tenant", "c.notes", 300): 150, ("d2tenant", "c.orders", 20): 20,
            ("d2one", "a.notes", 300): 150, ("d2one", "c.notes", 300): 150,
            ("d2one", "c.orders", 20): 20}, timeout=240)
        log.warning("day-2: backfills in the targets %.1fs after the deploy, writes going on "
                    "(%s)", backfilled, writer.rows)
    finally:
        writer.stop.set()
        thread.join(10)
    assert writer.error is None, writer.error
    assert writer.rows > 0
    wanted = expectations(["t1", "t2"], ["a", "c"], True)
    try:
        final = wait_equal(pg, sink, wanted, lag=lambda: 0, timeout=120,
                           what="after the writes")
    except AssertionError as exc:
        _where_are_they(stack, exc)
        raise
    log.warning("day-2: %d rows equal %.1fs after the deploy; %d rows written during the "
                "change (%d backfilled rows in t1.extra and t2.extra)", final.rows_compared,
                time.monotonic() - started, writer.rows, 2 * BACKFILLED_ROWS)
    with pg.connect() as conn:
        slots = {r[0] for r in conn.execute("SELECT slot_name FROM pg_replication_slots")}
    assert {"cdc_d2tenant_b_nonprod", "cdc_d2one_b_nonprod"}.isdisjoint(slots)
    for db in ("d2_t_b", "d2_o_b"):
        with pg.connect(db) as conn:
            assert conn.execute("SELECT count(*) FROM pg_publication").fetchone() == (0,)
    for command in ("apply", "plan"):
        extra = ("--prune",) if command == "apply" else ()
        code, again = each_service(root, command, "--connect-url", stack.connect_url, *extra)
        assert code == 0, again
        assert actions(again) == []


def test_a_quiet_database_keeps_its_slot_moving(day2: tuple[Stack, Path],
                                                pipelines: Pipelines) -> None:
    """Tenant c takes no writes while d2_shared_db does: its slot still advances."""
    stack, _root = day2
    pg = pipelines.source_pg
    slot = "cdc_d2tenant_c_nonprod"
    query = ("SELECT confirmed_flush_lsn::text, pg_wal_lsn_diff(pg_current_wal_lsn(), "
             "restart_lsn)::bigint FROM pg_replication_slots WHERE slot_name = %s")
    stack.wait_running("source-d2tenant-c", timeout=90)
    with pg.connect() as conn:
        found = conn.execute(query, (slot,)).fetchone()
    assert found is not None
    before = found
    with pg.connect("d2_shared_db") as shared:
        for n in range(300):
            shared.execute("INSERT INTO t1.items VALUES (%s, 'busy')", (100_000 + n,))
            time.sleep(0.02)
    deadline = time.monotonic() + 30
    after = before
    while time.monotonic() < deadline:
        with pg.connect() as conn:
            found = conn.execute(query, (slot,)).fetchone()
        assert found is not None
        after = found
        if after[0] != before[0]:
            break
        time.sleep(0.5)
    log.warning("day-2: quiet slot confirmed %s -> %s; WAL it retains %d -> %d bytes",
                before[0], after[0], before[1], after[1])
    assert after[0] != before[0], "the quiet database's slot did not move"

"""Whole pipelines on the real engine, source to sink: how fast, how big.

    python benchmarks/bench_e2e.py [--rows 100000] [--rate 1000] [--seconds 20]

Starts what the e2e suite runs (tests/e2e/stack.py: a 3-node Kafka cluster and a
Connect worker with the deployed Debezium plugins, and a source and a sink
PostgreSQL), generates a one-table db-shared config with `cdc-generator generate`,
and runs its source and sink twice, one after the other on fresh databases:

* ``generated``: the connectors exactly as generated;
* ``defaults``: the same connectors without the generator's tuning keys
  (:data:`TUNING`), so Debezium and Kafka Connect use their defaults there.

For each it prints

* snapshot: --rows rows already in the table; rows/s from the create requests until
  the target table holds them all;
* streaming: --rate single-row INSERTs per second for --seconds, each committed on
  its own; latency from the row's commit (its ``created_at``, ``clock_timestamp()``
  as it is inserted) to its arrival in the target (an ``arrived_at`` column with a
  ``clock_timestamp()`` default that only the target table has): p50, p95, p99, max;

and the floor: the same rows copied source to target with COPY. Also the RSS of the
brokers, the worker and both PostgreSQL servers. Prints figures, then whether the
issue's targets are met; asserts nothing on time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make `tests.e2e` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e import pipelines as pl
from tests.e2e.scenarios import PG_SERVER_BLOCK as SERVER
from tests.e2e.scenarios import write_config
from tests.e2e.stack import Stack, start_stack

from cdc_generator import connect, localpg

MB = 1024 * 1024
ENV = "nonprod"

#: the keys the generator sets for speed (source and sink); `defaults` runs without
TUNING = (
    "poll.interval.ms", "max.batch.size", "max.queue.size",
    "producer.override.enable.idempotence",
    "producer.override.max.in.flight.requests.per.connection",
    "producer.override.linger.ms", "producer.override.batch.size",
    "producer.override.compression.type",
    "batch.size", "consumer.override.max.poll.records",
    "consumer.override.max.partition.fetch.bytes",
)

GROUPS = f"""\
environments:
  nonprod:
    sink:
      host: ${{CDC_E2E_SINK_HOST}}
      port: ${{CDC_E2E_SINK_PORT}}
      user: ${{CDC_E2E_SINK_USER}}
      password: ${{CDC_E2E_SINK_PASSWORD}}
server_groups:
  - {{name: benchgen, server_group_type: db-shared, service: benchgen, server: {SERVER},
     databases: [{{name: bench_gen}}]}}
  - {{name: benchdef, server_group_type: db-shared, service: benchdef, server: {SERVER},
     databases: [{{name: bench_def}}]}}
"""
SERVICE = """\
service: {name}
server_group: {name}
source:
  type: postgres
  tables:
    - {{schema: public, name: events, primary_key: id}}
"""
SOURCE_DDL = """
CREATE TABLE public.events (id bigint PRIMARY KEY, tenant text NOT NULL, kind text,
                            amount numeric(12, 2), payload text,
                            created_at timestamptz NOT NULL DEFAULT clock_timestamp());
INSERT INTO public.events (id, tenant, kind, amount, payload)
SELECT n, 'tenant_' || (n % 50), 'kind_' || (n % 7), n / 100.0, repeat(md5(n::text), 2)
  FROM generate_series(1, {rows}) AS n;
"""
#: the target table, made first: only it has arrived_at
TARGET_DDL = """
CREATE TABLE public.events (id bigint PRIMARY KEY, tenant text NOT NULL, kind text,
                            amount numeric(12, 2), payload text, created_at timestamptz,
                            arrived_at timestamptz NOT NULL DEFAULT clock_timestamp());
"""


@dataclass
class Run:
    label: str
    snapshot_s: float = 0.0
    rows: int = 0
    latencies_ms: tuple[float, ...] = ()
    offered_per_s: float = 0.0

    @property
    def snapshot_rate(self) -> float:
        return self.rows / self.snapshot_s if self.snapshot_s else 0.0


def pct(values: tuple[float, ...], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def count(pg: localpg.LocalPostgres, db: str) -> int:
    with pg.connect(db) as conn:
        row = conn.execute("SELECT count(*) FROM public.events").fetchone()
    return int(row[0]) if row else 0


def without_tuning(connectors: list[connect.GeneratedConnector]) -> list[
        connect.GeneratedConnector]:
    """The connectors without :data:`TUNING` (each must be there: the list cannot rot)."""
    present = {k for c in connectors for k in c.config}
    missing = [k for k in TUNING if k not in present]
    if missing:
        raise SystemExit(f"bench: the generated connectors no longer set {missing}")
    out = []
    for c in connectors:
        config = {k: v for k, v in c.config.items() if k not in TUNING}
        out.append(connect.GeneratedConnector(c.path, c.name, c.connector_class, c.tasks_max,
                                              config, c.text))
    return out


def run_pipeline(stack: Stack, pg: localpg.LocalPostgres, sink: localpg.LocalPostgres,
                 root: Path, run: Run, *, service: str, db: str, rows: int, rate: int,
                 seconds: float, strip: bool) -> None:
    """Snapshot `rows`, then stream `rate` rows/s for `seconds`; fills `run`."""
    connectors = connect.load_generated(root, environment=ENV, service=service)
    if strip:
        connectors = without_tuning(connectors)
    with pl.databases(pg, {db: SOURCE_DDL.format(rows=rows)}), \
            pl.databases(sink, {service: TARGET_DDL}):
        pl.execute(pg, db, "ANALYZE public.events")
        # the publication and control tables the connector needs (it creates none)
        pl.apply_generated_sql(pg, sink, root, environment=ENV, service=service)
        started = time.monotonic()
        pl.start_connectors(stack, connectors, timeout=300)
        try:
            while count(sink, service) < rows:
                time.sleep(0.05)
            run.snapshot_s, run.rows = time.monotonic() - started, rows
            run.offered_per_s, run.latencies_ms = stream(pg, sink, db, service, first=rows,
                                                         rate=rate, seconds=seconds)
        finally:
            pl.stop_connectors(stack, connectors, pg)


def stream(pg: localpg.LocalPostgres, sink: localpg.LocalPostgres, db: str, sink_db: str, *,
           first: int, rate: int, seconds: float) -> tuple[float, tuple[float, ...]]:
    """Paced single-row INSERTs, each its own transaction; the latencies of all."""
    total = int(rate * seconds)
    with pg.connect(db) as conn:
        started = time.monotonic()
        for i in range(total):
            due = started + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            conn.execute("INSERT INTO public.events (id, tenant, kind, amount, payload) "
                         "VALUES (%s, 'tenant_s', 'stream', 1.5, 'x')", (first + 1 + i,))
        offered = total / (time.monotonic() - started)
    deadline = time.monotonic() + 120
    while count(sink, sink_db) < first + total:
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: streamed rows did not all arrive in {sink_db}")
        time.sleep(0.1)
    with sink.connect(sink_db) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM arrived_at - created_at) * 1000 FROM public.events "
            "WHERE id > %s", (first,)).fetchall()
    return offered, tuple(float(r[0]) for r in rows)


def copy_floor(pg: localpg.LocalPostgres, sink: localpg.LocalPostgres, rows: int) -> float:
    """Seconds to COPY the same rows source -> target, as a client can."""
    with pl.databases(pg, {"bench_floor": SOURCE_DDL.format(rows=rows)}), \
            pl.databases(sink, {"bench_floor": TARGET_DDL}), \
            pg.connect("bench_floor") as src, sink.connect("bench_floor") as dst:
        started = time.monotonic()
        columns = "id, tenant, kind, amount, payload, created_at"
        with src.cursor().copy(f"COPY public.events ({columns}) TO STDOUT") as out, \
                dst.cursor().copy(f"COPY public.events ({columns}) FROM STDIN") as into:
            for block in out:
                into.write(block)
        return time.monotonic() - started


def postgres_rss(pid: int) -> int:
    """RSS of the postmaster and its children, from /proc."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(entry.name) == pid or int(stat[1]) == pid:
                for line in (entry / "status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
        except (OSError, ValueError, IndexError):
            continue
    return total


def report(runs: list[Run], floor_s: float, rows: int, stack: Stack,
           servers: dict[str, localpg.LocalPostgres]) -> Iterator[str]:
    yield f"stack start: {stack.timings}"
    yield (f"floor: COPY {rows:,} rows source -> target in {floor_s:.2f} s "
           f"({rows / floor_s:,.0f} rows/s)")
    yield ("| config | snapshot rows/s | x floor | offered rows/s | p50 ms | p95 ms | p99 ms "
           "| max ms |")
    yield "|---|---|---|---|---|---|---|---|"
    for r in runs:
        lat = r.latencies_ms
        yield (f"| {r.label} | {r.snapshot_rate:,.0f} ({r.snapshot_s:.1f} s) | "
               f"{(rows / floor_s) / r.snapshot_rate:.1f}x slower | {r.offered_per_s:,.0f} | "
               f"{pct(lat, 50):.0f} | {pct(lat, 95):.0f} | {pct(lat, 99):.0f} | "
               f"{max(lat):.0f} |")
    rss = {name: (value or 0) / MB for name, value in stack.rss_bytes().items()}
    rss |= {name: postgres_rss(pg.pid) / MB for name, pg in servers.items()}
    yield "RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in rss.items())
    gen, default = runs
    ratio = gen.snapshot_rate / default.snapshot_rate
    p50, p99 = pct(gen.latencies_ms, 50), pct(gen.latencies_ms, 99)
    yield "targets (issue 11):"
    yield (f"  snapshot >= 1.5x the defaults': {ratio:.2f}x -> "
           f"{'met' if ratio >= 1.5 else 'NOT met'}")
    yield f"  streaming p50 <= 300 ms: {p50:.0f} -> {'met' if p50 <= 300 else 'NOT met'}"
    yield f"  streaming p99 <= 1500 ms: {p99:.0f} -> {'met' if p99 <= 1500 else 'NOT met'}"
    yield (f"  (defaults: p50 {pct(default.latencies_ms, 50):.0f} ms, "
           f"p99 {pct(default.latencies_ms, 99):.0f} ms)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1000, help="streamed rows per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to stream")
    parser.add_argument("--only", choices=["generated", "defaults"], help="run one config")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="cdc-bench-e2e-"))
    pg = localpg.start(settings={"wal_level": "logical", "max_replication_slots": "10",
                                 "max_wal_senders": "10"})
    sink = localpg.start()
    try:
        env = pl.worker_env(pg, sink)
        root = work / "repo"
        services = {n: SERVICE.format(name=n) for n in ("benchgen", "benchdef")}
        write_config(root, groups=GROUPS, services=services)
        with start_stack(work / "stack", env=env, brokers=3) as stack:
            runs = []
            for label, service, db, strip in (("generated", "benchgen", "bench_gen", False),
                                              ("defaults", "benchdef", "bench_def", True)):
                if args.only and args.only != label:
                    continue
                run = Run(label)
                run_pipeline(stack, pg, sink, root, run, service=service, db=db,
                             rows=args.rows, rate=args.rate, seconds=args.seconds,
                             strip=strip)
                runs.append(run)
                print(f"{label}: snapshot {run.snapshot_rate:,.0f} rows/s, streaming p50 "
                      f"{pct(run.latencies_ms, 50):.0f} ms", flush=True)
            floor_s = copy_floor(pg, sink, args.rows)
            if len(runs) == 2:
                for line in report(runs, floor_s, args.rows, stack,
                                   {"source pg": pg, "sink pg": sink}):
                    print(line)
    finally:
        pg.stop()
        sink.stop()
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""A generated source connector on the real engine: how fast, how big.

    python benchmarks/bench_e2e.py [--rows 100000] [--changes 200]

Starts its own PostgreSQL (wal_level=logical), Tansu broker and Kafka Connect worker
(tests/e2e/stack.py), generates a one-table db-shared config with `cdc-generator
generate`, and runs that generated source connector. Prints:

* stack start: broker ready, Connect REST up, worker joined and listing Debezium;
* snapshot throughput: --rows rows already in the table, events/s from the create
  request until the topic's end offsets add up to --rows;
* insert-to-topic latency: --changes single-row INSERTs, each committed and then
  waited for on the topic (wall clock, p50/p95/max);
* RSS of the worker, the broker and PostgreSQL (postmaster plus its children).

Prints figures only: nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in {None, ""}:  # run as a script: make `tests.e2e` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition
from tests.e2e.kafka import wait_for_topics
from tests.e2e.stack import Stack, start_stack

from cdc_generator import cli, connect, localpg

MB = 1024 * 1024
DB = "bench_db"
TOPIC = "cdc.bench.items"

GROUPS = """\
environments:
  nonprod: {heartbeat_interval_ms: 1000}
server_groups:
  - name: bench
    server_group_type: db-shared
    service: bench
    server: {type: postgres, host: "${BENCH_PG_HOST}", port: "${BENCH_PG_PORT}",
             user: "${BENCH_PG_USER}", password: "${BENCH_PG_PASSWORD}"}
    databases:
      - name: bench_db
"""
SERVICE = """\
service: bench
server_group: bench
source:
  type: postgres
  tables:
    - {schema: public, name: items, primary_key: id}
"""


def generated_source(root: Path) -> connect.GeneratedConnector:
    (root / "services").mkdir(parents=True)
    (root / "server-groups.yaml").write_text(GROUPS)
    (root / "services" / "bench.yaml").write_text(SERVICE)
    if cli.main(["generate", "--root", str(root)]) != 0:
        raise SystemExit("cdc-generator generate failed")
    (source,) = [c for c in connect.load_generated(root, environment="nonprod")
                 if c.name.startswith("source-")]
    return source


def consumer(bootstrap: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": "bench",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 20,
                     "broker.address.family": "v4", "log_level": 3})


def partitions(reader: Consumer, topic: str) -> list[int]:
    return sorted(reader.list_topics(topic, timeout=10).topics[topic].partitions)


def snapshot(stack: Stack, source: connect.GeneratedConnector, rows: int) -> float:
    """Seconds from the create request until ``rows`` records were read back. Records
    are counted as read: Tansu's high watermark lags the last batch, so end offsets
    would undercount."""
    started = time.monotonic()
    stack.create(source.name, source.rest_config())
    wait_for_topics(stack.bootstrap, [TOPIC], timeout=120)
    reader = consumer(stack.bootstrap)
    try:
        reader.assign([TopicPartition(TOPIC, p, OFFSET_BEGINNING)
                       for p in partitions(reader, TOPIC)])
        count, deadline = 0, started + 600
        while count < rows:
            if time.monotonic() > deadline:
                raise SystemExit(f"{count} of {rows} snapshot rows on {TOPIC} after 600 s")
            count += sum(1 for m in reader.consume(10_000, 0.2) if m.error() is None)
    finally:
        reader.close()
    return time.monotonic() - started


def latencies(stack: Stack, pg: localpg.LocalPostgres, changes: int, first_id: int) -> list[float]:
    reader = consumer(stack.bootstrap)
    out: list[float] = []
    try:
        reader.assign([TopicPartition(TOPIC, p, OFFSET_END) for p in partitions(reader, TOPIC)])
        with pg.connect(DB, autocommit=True) as conn:
            for n in range(first_id, first_id + changes):
                sent = time.monotonic()
                conn.execute("INSERT INTO public.items VALUES (%s, 'x')", (n,))
                while True:
                    if time.monotonic() - sent > 30:
                        raise SystemExit(f"insert {n} not on {TOPIC} within 30 s")
                    message = reader.poll(0.05)
                    if message is None or message.error() is not None:
                        continue
                    raw = message.key()
                    if raw and json.loads(raw)["payload"]["id"] == n:
                        out.append(time.monotonic() - sent)
                        break
    finally:
        reader.close()
    return out


def postgres_rss(pid: int) -> int:
    """The postmaster plus its children (backends, walsenders), from /proc."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if int(entry) == pid or ppid == pid:
            for line in status.splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=200)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        pg = localpg.start(settings={"max_replication_slots": "4"})
        try:
            pg.create_database(DB)
            with pg.connect(DB) as conn:
                conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, v text NOT NULL)")
                conn.execute("INSERT INTO public.items SELECT n, md5(n::text) "
                             "FROM generate_series(1, %s) AS n", (args.rows,))
            source = generated_source(work / "repo")
            env = {"BENCH_PG_HOST": pg.host, "BENCH_PG_PORT": str(pg.port),
                   "BENCH_PG_USER": pg.user, "BENCH_PG_PASSWORD": pg.password}
            with start_stack(work / "stack", env=env) as stack:
                t = stack.timings
                print(f"stack start        broker {t['broker_ready_s']:.2f} s, REST "
                      f"{t['rest_up_s']:.2f} s, worker ready {t['worker_ready_s']:.2f} s")
                seconds = snapshot(stack, source, args.rows)
                print(f"snapshot           {args.rows} rows in {seconds:.2f} s "
                      f"({args.rows / seconds:,.0f} events/s, create request to last offset)")
                lat = latencies(stack, pg, args.changes, args.rows + 1)
                print(f"insert -> topic    {len(lat)} single-row inserts: p50 "
                      f"{pct(lat, 0.5) * 1000:.0f} ms, p95 {pct(lat, 0.95) * 1000:.0f} ms, "
                      f"max {max(lat) * 1000:.0f} ms, mean {statistics.mean(lat) * 1000:.0f} ms")
                rss = stack.rss_bytes()
                assert pg.pid is not None
                print(f"RSS                worker {(rss['connect'] or 0) / MB:.0f} MB, broker "
                      f"{(rss['tansu'] or 0) / MB:.0f} MB, postgres "
                      f"{postgres_rss(pg.pid) / MB:.0f} MB (postmaster + backends)")
                stack.delete(source.name)
        finally:
            pg.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


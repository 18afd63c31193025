"""Time `manage-service --inspect`'s catalog work on a database with many tables.

Starts a throwaway PostgreSQL (cdc_generator.localpg), creates N tables (5,000 by
default: a key, a few columns, one with a composite key in ten), then times the
inspector (connect + the one catalog query) several times and prints the figures.
Exits 1 if the best run exceeds the budget (2 s).

    python benchmarks/bench_inspect.py [--tables 5000] [--runs 5] [--budget 2.0]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from cdc_generator import localpg
from cdc_generator.db.connection import connect, target_from_dsn
from cdc_generator.db.inspect import inspect_tables

CREATE = """
DO $$
BEGIN
  FOR i IN 1..%(n)s LOOP
    IF i %% 10 = 0 THEN
      EXECUTE format('CREATE TABLE public.t%%s (a int, b int, v text, w timestamptz, '
                     'PRIMARY KEY (a, b))', i);
    ELSE
      EXECUTE format('CREATE TABLE public.t%%s (id bigint PRIMARY KEY, owner_id text, '
                     'v text, w timestamptz)', i);
    END IF;
  END LOOP;
END
$$;
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds, best run")
    args = parser.parse_args(argv)
    with localpg.start(settings={"max_locks_per_transaction": "1024"}) as server:
        server.create_database("bench")
        started = time.perf_counter()
        with server.connect("bench") as conn:
            conn.execute((CREATE % {"n": int(args.tables)}).encode())
            conn.execute(b"ANALYZE")
        setup = time.perf_counter() - started
        target = target_from_dsn(server.dsn("bench"))
        timings = []
        found = 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            with connect(target) as conn:
                found = len(inspect_tables(conn, ["public"]))
            timings.append(time.perf_counter() - t0)
    best, median = min(timings), statistics.median(timings)
    print(f"inspect: {found} tables; setup {setup:.1f}s; "
          f"best {best * 1000:.0f} ms, median {median * 1000:.0f} ms, "
          f"worst {max(timings) * 1000:.0f} ms over {args.runs} runs "
          f"(budget {args.budget:.1f} s)")
    if found != args.tables:
        print(f"expected {args.tables} tables, found {found}", file=sys.stderr)
        return 1
    return 0 if best <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())

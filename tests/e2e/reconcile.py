"""Target tables against their source tables, row by row: the proof that a pipeline
moved the data right.

An :class:`Expectation` says which source rows belong in which target table (what a
pipeline is configured to do, written by the test, not read from the generated
files). :func:`differences` compares the two sides by key with values normalised by
their meaning (a ``numeric`` 1.50 equals 1.5, a ``timestamptz`` equals the same
instant in another zone, a ``jsonb`` its parsed value, an enum its label, a
``uuid`` its text), and describes every difference with the table, the key and both
rows. :func:`wait_equal` polls until no difference is left and the sinks have
consumed everything (their consumer groups have no lag), or reports what differs.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from cdc_generator import localpg

Row = dict[str, Any]


@dataclass(frozen=True)
class Expectation:
    """Target table ``target`` (``schema.table`` in ``sink_db``) holds exactly the rows
    of ``source`` (``schema.table`` in ``source_db``) that match ``where``."""

    scenario: str
    source_db: str
    source: str
    sink_db: str
    target: str
    key: tuple[str, ...]
    where: str | None = None

    @property
    def label(self) -> str:
        return f"{self.scenario}: {self.source_db}.{self.source} -> {self.sink_db}.{self.target}"


def _ident(qualified: str) -> sql.Composable:
    schema, table = qualified.split(".", 1)
    return sql.Identifier(schema, table)


def _exists(conn: psycopg.Connection[Any], qualified: str) -> bool:
    schema, table = qualified.split(".", 1)
    row = conn.execute("SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = %s "
                       "AND tablename = %s", (schema, table)).fetchone()
    return row is not None


def _rows(conn: psycopg.Connection[Any], qualified: str, where: str | None) -> list[Row]:
    query = sql.SQL("SELECT * FROM {}").format(_ident(qualified))
    if where:
        query = sql.SQL("{} WHERE {}").format(query, sql.SQL(where))
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
        cur.execute(query)
        return list(cur.fetchall())


def normalise(value: Any) -> Any:
    """A value by its meaning, so the same datum compares equal however it is typed."""
    if isinstance(value, decimal.Decimal):
        return value.normalize() if value.is_finite() else str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, memoryview):
        return bytes(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


def _as_source(value: Any, like: Any) -> Any:
    """``value`` (target side) read the way the source value ``like`` is typed: the
    JSON text of a jsonb column, a uuid written as text."""
    if isinstance(like, dict | list) and isinstance(value, str):
        try:
            return normalise(json.loads(value))
        except ValueError:
            return value
    return normalise(value)


@dataclass(frozen=True)
class Difference:
    expectation: Expectation
    key: tuple[Any, ...]
    source_row: Row | None
    target_row: Row | None
    columns: tuple[str, ...] = ()

    def __str__(self) -> str:
        key = dict(zip(self.expectation.key, self.key, strict=True))
        if self.target_row is None:
            what = "missing in the target"
        elif self.source_row is None:
            what = "in the target but not (or no longer) in the source"
        else:
            what = f"differs in {', '.join(self.columns)}"
        return (f"{self.expectation.label}: key {key} {what}\n"
                f"    source: {self.source_row}\n    target: {self.target_row}")


def differences(source: psycopg.Connection[Any], target: psycopg.Connection[Any],
                expectation: Expectation) -> list[Difference]:
    """Every row that is not the same on both sides (missing, extra or different)."""
    e = expectation
    want = {tuple(r[k] for k in e.key): r for r in _rows(source, e.source, e.where)}
    have_rows = _rows(target, e.target, None) if _exists(target, e.target) else []
    missing_key_columns = [k for k in e.key if have_rows and k not in have_rows[0]]
    if missing_key_columns:
        return [Difference(e, (), None, have_rows[0], tuple(missing_key_columns))]
    have = {tuple(normalise(r[k]) for k in e.key): r for r in have_rows}
    out: list[Difference] = []
    for raw_key, row in want.items():
        key = tuple(normalise(v) for v in raw_key)
        got = have.pop(key, None)
        if got is None:
            out.append(Difference(e, raw_key, row, None))
            continue
        bad = tuple(c for c, v in row.items()
                    if c not in got or normalise(v) != _as_source(got[c], v))
        if bad:
            out.append(Difference(e, raw_key, row, got, bad))
    out.extend(Difference(e, key, None, row) for key, row in have.items())
    return out


def all_differences(source_pg: localpg.LocalPostgres, sink_pg: localpg.LocalPostgres,
                    expectations: Iterable[Expectation]) -> list[Difference]:
    out: list[Difference] = []
    conns: dict[tuple[str, str], psycopg.Connection[Any]] = {}
    try:
        for e in expectations:
            for side, server, db in (("s", source_pg, e.source_db), ("t", sink_pg, e.sink_db)):
                if (side, db) not in conns:
                    conns[side, db] = server.connect(db)
            out.extend(differences(conns["s", e.source_db], conns["t", e.sink_db], e))
    finally:
        for conn in conns.values():
            conn.close()
    return out


@dataclass
class Drained:
    seconds: float
    rows_compared: int
    polls: int


def wait_equal(source_pg: localpg.LocalPostgres, sink_pg: localpg.LocalPostgres,
               expectations: Sequence[Expectation], *, lag: Callable[[], int],
               timeout: float = 90.0, what: str = "") -> Drained:
    """Poll until every target equals its source and ``lag()`` (records the sinks have
    not yet consumed) is 0; on time-out fail with every difference left."""
    started = time.monotonic()
    polls = 0
    while True:
        polls += 1
        diffs = all_differences(source_pg, sink_pg, expectations)
        behind = lag() if not diffs else -1
        if not diffs and behind == 0:
            # the lag said the sinks had read everything: compare once more, as a
            # record read may have been written only after the first comparison
            diffs = all_differences(source_pg, sink_pg, expectations)
            if not diffs:
                return Drained(time.monotonic() - started, count_rows(source_pg, expectations),
                               polls)
        if time.monotonic() - started > timeout:
            shown = "\n".join(str(d) for d in diffs[:20])
            more = f"\n... and {len(diffs) - 20} more" if len(diffs) > 20 else ""
            raise AssertionError(
                f"{what or 'targets'} not equal to their sources after {timeout:g} s "
                f"({len(diffs)} differences; sinks' lag {behind}):\n{shown}{more}")
        time.sleep(0.25)


def count_rows(source_pg: localpg.LocalPostgres, expectations: Iterable[Expectation]) -> int:
    total = 0
    by_db: dict[str, list[Expectation]] = {}
    for e in expectations:
        by_db.setdefault(e.source_db, []).append(e)
    for db, es in by_db.items():
        with source_pg.connect(db) as conn:
            for e in es:
                total += len(_rows(conn, e.source, e.where))
    return total


def table_types(pg: localpg.LocalPostgres, db: str, qualified: str) -> Mapping[str, str]:
    """Column -> formatted type of a table (for messages and type checks)."""
    schema, table = qualified.split(".", 1)
    with pg.connect(db) as conn:
        rows = conn.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
            "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped",
            (schema, table)).fetchall()
    return {str(name): str(kind) for name, kind in rows}


def primary_key(pg: localpg.LocalPostgres, db: str, qualified: str) -> tuple[str, ...]:
    schema, table = qualified.split(".", 1)
    with pg.connect(db) as conn:
        rows = conn.execute(
            "SELECT a.attname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true "
            "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum "
            "WHERE i.indisprimary AND n.nspname = %s AND c.relname = %s ORDER BY k.ord",
            (schema, table)).fetchall()
    return tuple(str(r[0]) for r in rows)

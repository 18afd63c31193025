"""preflight's publication check: the connector's publication exists with exactly the
tables, row filters and operations it needs (publication.autocreate.mode is disabled,
so nothing else would make it so)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cdc_generator import control, layout, publication, rowfilter
from cdc_generator.db.check import FAIL, PASS, ROW_FILTER_VERSION, WARN, Check
from cdc_generator.plan import Pipeline

if TYPE_CHECKING:
    import psycopg

_PUBLICATION_SQL = """
SELECT puballtables, pubinsert, pubupdate, pubdelete, pubtruncate
  FROM pg_publication WHERE pubname = %s
"""
_PUBLICATION_TABLES_SQL = """
SELECT schemaname::text, tablename::text, {rowfilter}
  FROM pg_publication_tables WHERE pubname = %s
"""


def publication_checks(conn: psycopg.Connection[Any], p: Pipeline) -> list[Check]:
    source = p.source
    name = source.publication_name
    autocreate = source.publication_autocreate_mode != "disabled"
    fix = (f"-- cdc-generator apply --environment {p.environment} --service {p.service}\n"
           f"-- or, as a DBA, {layout.in_repo(publication.path_of(p))}:\n"
           + publication.setup_sql(source))

    def check(status: str, message: str, fix: str = "") -> Check:
        return Check("publication", status, message, fix, source.database, p.customer, name)

    row = conn.execute(_PUBLICATION_SQL, (name,)).fetchone()
    if row is None:
        if autocreate:
            mode = source.publication_autocreate_mode
            return [check(PASS, f"publication {name!r} does not exist yet; the connector "
                          f"creates it (publication.autocreate.mode={mode})")]
        return [check(FAIL, f"publication {name!r} does not exist; the connector does not "
                      "create it (publication.autocreate.mode=disabled)", fix)]
    all_tables, ins, upd, dele, trunc = row
    if all_tables:
        return [check(FAIL if not autocreate else WARN,
                      f"publication {name!r} is FOR ALL TABLES", fix)]
    version = conn.info.server_version
    column = "rowfilter" if version >= ROW_FILTER_VERSION else "NULL::text"
    rows = conn.execute(_PUBLICATION_TABLES_SQL.format(rowfilter=column), (name,)).fetchall()
    have = {(str(s), str(t)): f for s, t, f in rows}
    ctl = control.Control.of(source.slot_name)
    want = {(t.schema, t.name): t.filter for t in source.tables}
    want |= {(control.SCHEMA, table): None for table in ctl.tables}
    problems = []
    if missing := sorted(set(want) - set(have)):
        problems.append("misses " + ", ".join(f"{s}.{t}" for s, t in missing))
    if extra := sorted(set(have) - set(want)):
        problems.append("also publishes " + ", ".join(f"{s}.{t}" for s, t in extra))
    for key in sorted(set(want) & set(have)):
        ours, theirs = want[key], have[key]
        if ours is None and theirs is None:
            continue
        if ours is None or theirs is None or not rowfilter.equivalent(ours, theirs):
            problems.append(f"{key[0]}.{key[1]} is filtered by {theirs or 'nothing'}, "
                            f"expected {ours or 'nothing'}")
    if not (ins and upd and dele and trunc):
        problems.append(f"does not publish all of {publication.PUBLISH}")
    if problems:
        return [check(WARN if autocreate else FAIL,
                      f"publication {name!r} " + "; ".join(problems), fix)]
    return [check(PASS, f"publication {name!r} has the expected {len(want)} table(s) "
                  "and filters")]

"""changes.py against a real server: the actions a live database needs, run until none
are left; a table added to a running pipeline is backfilled once; orphans found."""

from __future__ import annotations

import json
from pathlib import Path

from cdc_generator import changes, control, localpg
from cdc_generator.config.repo import load_config
from cdc_generator.db import live
from cdc_generator.plan import Pipeline, build_plan
from tests.db.repo import ORDERS_SERVICE, shop_groups, write_repo

TABLES = """
CREATE TABLE public.orders (id int PRIMARY KEY, region text, total numeric(10, 2));
ALTER TABLE public.orders REPLICA IDENTITY FULL;
CREATE TABLE public.order_lines (order_id int, line_no int, sku text,
                                 PRIMARY KEY (order_id, line_no));
CREATE TABLE public.refunds (id int PRIMARY KEY, amount int);
"""
WITH_REFUNDS = ORDERS_SERVICE.rstrip(" ") + """\
        - schema: public
          name: refunds
          primary_key: id
    """


def pipeline(root: Path, db: str, service: str = ORDERS_SERVICE) -> Pipeline:
    write_repo(root, shop_groups(db), {"orders": service})
    (p,) = build_plan(load_config(root), environment="dev").pipelines
    return p


def state(pg: localpg.LocalPostgres, db: str, p: Pipeline) -> live.SourceState:
    with pg.connect(db) as conn:
        return live.source_state(conn, publication=p.source.publication_name,
                                 slot=p.source.slot_name,
                                 ctl=control.Control.of(p.source.slot_name))


def run(pg: localpg.LocalPostgres, db: str, actions: list[changes.Action]) -> None:
    with pg.connect(db) as conn:
        for a in actions:
            conn.execute(a.sql.encode())


def kinds(actions: list[changes.Action]) -> list[tuple[str, str]]:
    return [(a.action, a.object) for a in actions]


def test_a_new_pipeline_then_an_added_table(pg_server: localpg.LocalPostgres, pg_db: str,
                                            tmp_path: Path) -> None:
    with pg_server.connect(pg_db) as conn:
        conn.execute(TABLES.encode())
    p = pipeline(tmp_path / "a", pg_db)
    ctl = control.Control.of(p.source.slot_name)
    first = changes.source_actions(p, state(pg_server, pg_db, p))
    assert kinds(first) == [
        (changes.CREATE_CONTROL, f"{ctl.signal_qualified}, {ctl.heartbeat_qualified}"),
        (changes.CREATE_PUBLICATION, p.source.publication_name),
        (changes.RECORD_COVERED, "public.orders"),
        (changes.RECORD_COVERED, "public.order_lines"),
    ]
    run(pg_server, pg_db, first)
    assert changes.source_actions(p, state(pg_server, pg_db, p)) == []
    run(pg_server, pg_db, first)  # every statement is safe to run again
    assert changes.source_actions(p, state(pg_server, pg_db, p)) == []

    # the connector starts (its slot appears), then the config captures one more table
    with pg_server.connect(pg_db) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                     (p.source.slot_name,))
    grown = pipeline(tmp_path / "b", pg_db, WITH_REFUNDS)
    second = changes.source_actions(grown, state(pg_server, pg_db, grown))
    assert kinds(second) == [(changes.ALTER_PUBLICATION, p.source.publication_name),
                             (changes.BACKFILL, "public.refunds")]
    assert "adds public.refunds" in second[0].note
    run(pg_server, pg_db, second)
    after = state(pg_server, pg_db, grown)
    assert changes.source_actions(grown, after) == []
    # the unchanged memberships kept their rows; the new one got its signal, once
    refunds = after.member("public.refunds")
    assert refunds is not None
    with pg_server.connect(pg_db) as conn:
        rows = conn.execute(
            f"SELECT id, type, data FROM cdc.{control.ident(ctl.signal_table)} ORDER BY id"
        ).fetchall()
    signals = {r[0]: (r[1], json.loads(r[2])) for r in rows}
    assert signals[control.backfill_id(refunds.oid)] == (
        "execute-snapshot", {"data-collections": ["public.refunds"], "type": "incremental"})
    assert sorted(k for k, (kind, _d) in signals.items() if kind == "log") == sorted(
        control.covered_id(m.oid) for m in after.members
        if m.qualified in ("public.orders", "public.order_lines"))
    run(pg_server, pg_db, second)
    with pg_server.connect(pg_db) as conn:
        (count,) = conn.execute(
            f"SELECT count(*) FROM cdc.{control.ident(ctl.signal_table)}").fetchone() or (0,)
    assert count == len(signals)


def test_a_changed_row_filter_is_backfilled_with_it(pg_server: localpg.LocalPostgres,
                                                    pg_db: str, tmp_path: Path) -> None:
    with pg_server.connect(pg_db) as conn:
        conn.execute(TABLES.encode())
    eu = ORDERS_SERVICE.replace("primary_key: id\n", "primary_key: id\n"
                                "          filter: \"region = 'eu'\"\n", 1)
    p = pipeline(tmp_path / "a", pg_db, eu)
    run(pg_server, pg_db, changes.source_actions(p, state(pg_server, pg_db, p)))
    with pg_server.connect(pg_db) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')",
                     (p.source.slot_name,))
    # PostgreSQL prints the stored filter differently; that is no change
    assert changes.source_actions(p, state(pg_server, pg_db, p)) == []
    wider = pipeline(tmp_path / "b", pg_db, eu.replace("region = 'eu'", "region IN ('eu', 'us')"))
    actions = changes.source_actions(wider, state(pg_server, pg_db, wider))
    assert kinds(actions) == [(changes.ALTER_PUBLICATION, p.source.publication_name),
                              (changes.BACKFILL, "public.orders")]
    assert "changes the row filter of public.orders" in actions[0].note
    assert "region IN (''eu'', ''us'')" in actions[1].sql  # in the signal's SQL literal
    run(pg_server, pg_db, actions)
    assert changes.source_actions(wider, state(pg_server, pg_db, wider)) == []


def test_orphans_are_what_no_configured_pipeline_uses(pg_server: localpg.LocalPostgres,
                                                      pg_db: str, tmp_path: Path) -> None:
    p = pipeline(tmp_path / "a", pg_db)
    with pg_server.connect(pg_db) as conn:
        conn.execute(TABLES.encode())
        for slot in ("cdc_gone_dev", p.source.slot_name, "someone_elses"):
            conn.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (slot,))
        conn.execute("CREATE PUBLICATION cdc_gone_dev FOR TABLE public.refunds")
        slots = live.slots(conn)
    try:
        found = changes.orphan_actions("dev", [p], slots, {pg_db: ["cdc_gone_dev",
                                                                   p.source.slot_name]})
        assert kinds(found) == [
            (changes.DROP_PUBLICATION, "cdc_gone_dev"),
            (changes.DROP_CONTROL, "cdc.gone_dev_signal, cdc.gone_dev_heartbeat"),
            (changes.DROP_SLOT, "cdc_gone_dev"),
        ]
        assert found[2].database == pg_db
        assert "holds" in found[2].note
        run(pg_server, pg_db, found)
        with pg_server.connect(pg_db) as conn:
            left = {s.name for s in live.slots(conn)}
        assert left >= {p.source.slot_name, "someone_elses"}
        assert "cdc_gone_dev" not in left
    finally:
        with pg_server.connect(pg_db) as conn:
            conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                         "WHERE database = current_database()")

"""`cdc-generator plan` and `apply` against a real server: a new pipeline prepared, a
second apply that does nothing, a table added to a running pipeline waiting for its
connector, an orphaned slot dropped only with --prune, a role that may not."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cdc_generator import localpg
from cdc_generator.cli import main
from tests.db.repo import ORDERS_SERVICE, point_env_at, shop_groups, write_repo

TABLES = """
CREATE TABLE public.orders (id int PRIMARY KEY, region text);
CREATE TABLE public.order_lines (order_id int, line_no int, sku text,
                                 PRIMARY KEY (order_id, line_no));
CREATE TABLE public.refunds (id int PRIMARY KEY);
INSERT INTO public.refunds SELECT generate_series(1, 250);
ANALYZE public.refunds;
"""
WITH_REFUNDS = ORDERS_SERVICE.rstrip(" ") + """\
        - schema: public
          name: refunds
          primary_key: id
    """


class Repo:
    def __init__(self, root: Path, server: localpg.LocalPostgres, db: str,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.root, self.server, self.db, self.capsys = root, server, db, capsys

    def run(self, command: str, *extra: str) -> tuple[int, dict[str, Any]]:
        self.capsys.readouterr()
        code = main([command, "--root", str(self.root), "--environment", "dev",
                     "--format", "json", *extra])
        return code, json.loads(self.capsys.readouterr().out)

    def text(self, command: str, *extra: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main([command, "--root", str(self.root), "--environment", "dev", *extra])
        return code, self.capsys.readouterr().out

    def sql(self, text: str) -> Any:
        with self.server.connect(self.db) as conn:
            cur = conn.execute(textwrap.dedent(text).encode())
            return cur.fetchall() if cur.description else None


def actions(payload: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["action"], a["object"]) for a in payload["result"]["actions"]]


@pytest.fixture
def repo(pg_server: localpg.LocalPostgres, pg_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Repo:
    root = write_repo(tmp_path, shop_groups(pg_db), {"orders": ORDERS_SERVICE})
    point_env_at(monkeypatch, pg_server)
    r = Repo(root, pg_server, pg_db, capsys)
    with pg_server.connect(pg_db) as conn:
        conn.execute(TABLES.encode())
    return r


def test_plan_apply_then_nothing_left(repo: Repo) -> None:
    code, planned = repo.run("plan")
    assert code == 1
    assert planned["command"] == "plan"
    first = planned["result"]["actions"][0]
    assert set(first) >= {"action", "environment", "database", "connector", "object", "sql"}
    assert (first["environment"], first["database"], first["connector"]) == (
        "dev", repo.db, "source-orders")
    assert actions(planned) == [
        ("create-control-tables", "cdc.orders_dev_signal, cdc.orders_dev_heartbeat"),
        ("create-publication", "cdc_orders_dev"),
        ("record-covered", "public.orders"),
        ("record-covered", "public.order_lines"),
    ]
    code, applied = repo.run("apply")
    assert code == 0, applied
    assert {a["status"] for a in applied["result"]["actions"]} == {"done"}
    for command in ("apply", "plan"):  # a second apply does nothing; the plan is empty
        code, again = repo.run(command)
        assert code == 0, again
        assert actions(again) == []
    code, text = repo.text("plan")
    assert "nothing to do: the live databases match the config" in text


def test_an_added_table_waits_for_its_connector(repo: Repo) -> None:
    assert repo.run("apply")[0] == 0
    repo.sql("SELECT pg_create_logical_replication_slot('cdc_orders_dev', 'pgoutput')")
    (repo.root / "services" / "orders.yaml").write_text(textwrap.dedent(WITH_REFUNDS))
    code, planned = repo.run("plan")
    assert code == 1
    assert actions(planned) == [("alter-publication", "cdc_orders_dev"),
                                ("backfill-table", "public.refunds")]
    backfill = planned["result"]["actions"][1]
    assert backfill["rows"] == 250  # the planner's estimate: what the backfill reads
    code, text = repo.text("plan")
    assert "> backfill-table public.refunds" in text
    assert "~250 rows" in text
    code, applied = repo.run("apply")
    assert code == 1  # the backfill is not sent: nothing says the connector has the table
    status = {a["action"]: a for a in applied["result"]["actions"]}
    assert status["alter-publication"]["status"] == "done"
    assert status["backfill-table"]["status"] == "waiting"
    assert "--connect-url" in status["backfill-table"]["why"]
    assert repo.sql("SELECT count(*) FROM cdc.orders_dev_signal "
                    "WHERE type = 'execute-snapshot'") == [(0,)]
    assert actions(repo.run("plan")[1]) == [("backfill-table", "public.refunds")]
    repo.sql("SELECT pg_drop_replication_slot('cdc_orders_dev')")


def test_orphans_are_dropped_only_with_prune(repo: Repo) -> None:
    assert repo.run("apply")[0] == 0
    repo.sql("SELECT pg_create_logical_replication_slot('cdc_gone_dev', 'pgoutput');"
             "CREATE PUBLICATION cdc_gone_dev FOR TABLE public.refunds")
    code, planned = repo.run("plan")
    assert code == 1
    assert actions(planned) == [("drop-publication", "cdc_gone_dev"),
                                ("drop-control-tables",
                                 "cdc.gone_dev_signal, cdc.gone_dev_heartbeat"),
                                ("drop-slot", "cdc_gone_dev")]
    code, kept = repo.run("apply")
    assert code == 1
    assert {a["status"] for a in kept["result"]["actions"]} == {"skipped"}
    assert repo.sql("SELECT count(*) FROM pg_replication_slots "
                    "WHERE slot_name = 'cdc_gone_dev'") == [(1,)]
    code, pruned = repo.run("apply", "--prune")
    assert code == 0, pruned
    assert repo.sql("SELECT count(*) FROM pg_replication_slots "
                    "WHERE slot_name = 'cdc_gone_dev'") == [(0,)]
    assert repo.run("plan")[0] == 0


def test_a_role_that_may_not_gets_the_sql_for_a_dba(repo: Repo,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    repo.sql("CREATE ROLE cdc_reader LOGIN PASSWORD 'reader-pw-7Qx' REPLICATION;"
             f"GRANT CONNECT ON DATABASE {repo.db} TO cdc_reader;"
             "GRANT SELECT ON ALL TABLES IN SCHEMA public TO cdc_reader")
    try:
        point_env_at(monkeypatch, repo.server, user="cdc_reader", password="reader-pw-7Qx")
        code, text = repo.text("apply")
        assert code == 1
        assert "-> refused: cdc_reader may not:" in text
        assert "reader-pw-7Qx" not in text
        code, planned = repo.text("plan")
        assert 'CREATE SCHEMA IF NOT EXISTS "cdc"' in planned  # the SQL for a DBA
    finally:
        repo.sql(f"REVOKE ALL ON DATABASE {repo.db} FROM cdc_reader;"
                 "DROP OWNED BY cdc_reader; DROP ROLE cdc_reader")

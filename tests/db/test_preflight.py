"""preflight against a real server: every check passing, failing, and fixed by its SQL."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cdc_generator import localpg, publication
from cdc_generator.cli import main
from cdc_generator.config.repo import load_config
from cdc_generator.plan import build_plan
from tests.db.repo import ORDERS_SERVICE, point_env_at, shop_groups, write_repo

TABLES = """
CREATE TABLE public.orders (id int PRIMARY KEY, region text, total numeric);
CREATE TABLE public.order_lines (order_id int, line_no int, sku text,
                                 PRIMARY KEY (order_id, line_no));
"""

FILTERED = ORDERS_SERVICE.replace(
    "name: orders  # the main table\n          primary_key: id\n",
    "name: orders  # the main table\n          primary_key: id\n"
    "          filter: \"region = 'eu'\"\n")


class Shop:
    def __init__(self, server: localpg.LocalPostgres, db: str, root: Path,
                 capsys: pytest.CaptureFixture[str]) -> None:
        self.server, self.db, self.root, self.capsys = server, db, root, capsys

    def sql(self, text: str) -> None:
        with self.server.connect(self.db) as conn:
            conn.execute(textwrap.dedent(text).encode())

    def preflight(self, *extra: str) -> tuple[int, list[dict[str, Any]]]:
        self.capsys.readouterr()
        rc = main(["preflight", "--root", str(self.root), "--service", "orders",
                   "--environment", "dev", "--format", "json", *extra])
        out = self.capsys.readouterr().out
        payload = json.loads(out)
        assert payload["ok"] is (rc == 0)
        checks: list[dict[str, Any]] = payload["result"]["checks"]
        return rc, checks

    def setup(self) -> None:
        """Run the generated source SQL, as README says to before deploying."""
        for pipeline in build_plan(load_config(self.root), environment="dev").pipelines:
            self.sql(publication.setup_sql(pipeline.source))

    def service(self, text: str) -> None:
        (self.root / "services" / "orders.yaml").write_text(textwrap.dedent(text))

    def apply_fixes(self, checks: list[dict[str, Any]], as_server: bool = False) -> None:
        for c in checks:
            if c["status"] == "fail":
                if as_server:
                    with self.server.connect() as conn:
                        for line in c["fix"].splitlines():
                            if not line.startswith("--"):
                                conn.execute(line.encode())
                else:
                    self.sql(c["fix"])


def by_id(checks: list[dict[str, Any]], check: str) -> list[dict[str, Any]]:
    return [c for c in checks if c["check"] == check]


def status(checks: list[dict[str, Any]], check: str) -> set[str]:
    return {c["status"] for c in by_id(checks, check)}


@pytest.fixture
def shop(pg_server: localpg.LocalPostgres, pg_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Shop:
    root = write_repo(tmp_path, shop_groups(pg_db), {"orders": ORDERS_SERVICE})
    point_env_at(monkeypatch, pg_server)
    s = Shop(pg_server, pg_db, root, capsys)
    s.sql(TABLES)
    s.setup()
    return s


def test_everything_passes(shop: Shop) -> None:
    rc, checks = shop.preflight()
    assert rc == 0, [c for c in checks if c["status"] != "pass"]
    ids = {c["check"] for c in checks}
    assert ids >= {"server_version", "wal_level", "replication_role", "max_replication_slots",
                   "max_wal_senders", "table_exists", "select_privilege", "replica_identity",
                   "publication"}
    assert len(by_id(checks, "table_exists")) == 2
    assert "has the expected 4 table(s)" in by_id(checks, "publication")[0]["message"]


def test_text_report(shop: Shop) -> None:
    shop.sql("DROP TABLE public.order_lines")
    assert main(["preflight", "--root", str(shop.root), "--service", "orders",
                 "--environment", "dev"]) == 1
    out = shop.capsys.readouterr().out
    assert "FAIL table_exists" in out
    assert "--remove-table order_lines --schema public" in out
    # the missing table, and the publication that lost it
    assert "checks: 2 failed" in out


def test_missing_table_and_primary_key(shop: Shop) -> None:
    shop.sql("DROP TABLE public.order_lines; "
             "CREATE TABLE public.order_lines (order_id int, line_no int)")
    rc, checks = shop.preflight()
    assert rc == 1
    assert status(checks, "replica_identity") == {"pass", "fail"}
    shop.apply_fixes(checks)
    rc, checks = shop.preflight()
    assert rc == 0
    shop.sql("ALTER TABLE public.orders RENAME TO orders_old")
    rc, checks = shop.preflight()
    assert rc == 1
    assert status(checks, "table_exists") == {"pass", "fail"}


def test_replica_identity_nothing_and_primary_key_mismatch(shop: Shop) -> None:
    shop.sql("ALTER TABLE public.order_lines DROP CONSTRAINT order_lines_pkey;"
             "ALTER TABLE public.order_lines REPLICA IDENTITY FULL;"
             "ALTER TABLE public.orders REPLICA IDENTITY NOTHING")
    rc, checks = shop.preflight()
    failing = [c["subject"] for c in checks if c["status"] == "fail"]
    assert failing == ["public.orders"]
    shop.apply_fixes(checks)
    assert shop.preflight()[0] == 0
    shop.service(ORDERS_SERVICE.replace("primary_key: id", "primary_key: region"))
    rc, checks = shop.preflight()
    assert rc == 0
    assert status(checks, "primary_key") == {"warn"}
    shop.service(ORDERS_SERVICE.replace("primary_key: id", "primary_key: nope"))
    rc, checks = shop.preflight()
    assert rc == 1
    assert status(checks, "primary_key") == {"fail"}


def test_role_privileges(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    shop.sql("CREATE ROLE cdc_reader LOGIN PASSWORD 'Reader-Pw-123'")
    point_env_at(monkeypatch, shop.server, user="cdc_reader", password="Reader-Pw-123")
    try:
        rc, checks = shop.preflight()
        assert rc == 1
        assert status(checks, "replication_role") == {"fail"}
        assert status(checks, "select_privilege") == {"fail"}
        assert by_id(checks, "replication_role")[0]["fix"].startswith(
            'ALTER ROLE "cdc_reader" WITH REPLICATION;')
        shop.apply_fixes(checks)
        rc, checks = shop.preflight()
        assert rc == 0, [c for c in checks if c["status"] == "fail"]
        # a managed-cloud replication role counts as well
        shop.sql("ALTER ROLE cdc_reader NOREPLICATION; CREATE ROLE rds_replication;"
                 "GRANT rds_replication TO cdc_reader")
        rc, checks = shop.preflight()
        assert rc == 0
        assert "rds_replication" in by_id(checks, "replication_role")[0]["message"]
    finally:
        shop.sql("DROP OWNED BY cdc_reader; DROP ROLE cdc_reader;"
                 "DROP ROLE IF EXISTS rds_replication")


def test_row_filter_and_publication(shop: Shop) -> None:
    shop.service(FILTERED)
    rc, checks = shop.preflight()
    assert rc == 1
    assert status(checks, "row_filter") == {"fail"}
    assert "outside the replica identity" in by_id(checks, "row_filter")[0]["message"]
    assert status(checks, "publication") == {"fail"}
    shop.apply_fixes(checks)
    rc, checks = shop.preflight()
    assert rc == 0, [c for c in checks if c["status"] != "pass"]
    with shop.server.connect(shop.db) as conn:
        rows = conn.execute("SELECT tablename::text, rowfilter FROM pg_publication_tables "
                            "WHERE pubname = 'cdc_orders_dev' AND schemaname = 'public' "
                            "ORDER BY 1").fetchall()
    assert rows == [("order_lines", None), ("orders", "(region = 'eu'::text)")]
    # drift: someone changed the filter by hand
    shop.sql("ALTER PUBLICATION cdc_orders_dev SET TABLE public.orders WHERE (region = 'us')")
    rc, checks = shop.preflight()
    message = by_id(checks, "publication")[0]["message"]
    assert rc == 1
    assert message.startswith("publication 'cdc_orders_dev' misses ")
    assert "public.order_lines;" in message
    assert "expected region" in message
    shop.apply_fixes(checks)
    assert shop.preflight()[0] == 0
    shop.service(FILTERED.replace("region = 'eu'", "regoin = 'eu'"))
    rc, checks = shop.preflight()
    assert rc == 1
    assert "did you mean 'region'" in by_id(checks, "row_filter")[0]["message"]


def test_replication_slots(shop: Shop) -> None:
    shop.sql("SELECT pg_create_logical_replication_slot('cdc_orders_dev', 'test_decoding')")
    rc, checks = shop.preflight()
    slot = by_id(checks, "replication_slot")
    assert rc == 1
    assert slot[0]["status"] == "fail"
    assert "test_decoding" in slot[0]["message"]
    shop.apply_fixes(checks)
    shop.sql("SELECT pg_create_logical_replication_slot('cdc_orders_dev', 'pgoutput')")
    rc, checks = shop.preflight()
    slot = by_id(checks, "replication_slot")
    assert rc == 0
    assert "exists (inactive), retains" in slot[0]["message"]
    assert "0 of 20 slots" not in by_id(checks, "max_replication_slots")[0]["message"]


def test_server_settings_fail_then_pass_after_fix_and_restart(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    settings = {"wal_level": "replica", "max_replication_slots": "1", "max_wal_senders": "0"}
    with localpg.start(settings=settings) as server:
        server.create_database("shop")
        root = write_repo(tmp_path, shop_groups("shop"), {"orders": ORDERS_SERVICE})
        point_env_at(monkeypatch, server)
        s = Shop(server, "shop", root, capsys)
        s.sql(TABLES + "SELECT pg_create_physical_replication_slot('standby');")
        s.setup()
        rc, checks = s.preflight()
        failing = {c["check"] for c in checks if c["status"] == "fail"}
        assert rc == 1
        assert failing == {"wal_level", "max_replication_slots", "max_wal_senders"}
        assert by_id(checks, "wal_level")[0]["fix"].startswith(
            "ALTER SYSTEM SET wal_level = logical;")
        s.apply_fixes(checks, as_server=True)
        server.restart()
        rc, checks = s.preflight()
        assert rc == 0, [c for c in checks if c["status"] != "pass"]
        assert "other slot 'standby'" in by_id(checks, "replication_slot")[0]["message"]


def test_db_per_tenant_checks_every_tenant(pg_server: localpg.LocalPostgres, pg_db: str,
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    second = pg_db + "_b"
    pg_server.create_database(second)
    try:
        groups = shop_groups(pg_db).replace("db-shared", "db-per-tenant").replace(
            f"- name: {pg_db}\n                service: orders\n",
            f"- name: {pg_db}\n                customer: acme\n"
            f"              - name: {second}\n                customer: globex\n")
        root = write_repo(tmp_path, groups, {"orders": FILTERED.replace(
            "region = 'eu'", "region = '{{CUSTOMER_ID}}'")})
        point_env_at(monkeypatch, pg_server)
        for db in (pg_db, second):
            Shop(pg_server, db, root, capsys).sql(TABLES)
        s = Shop(pg_server, pg_db, root, capsys)
        rc, checks = s.preflight()
        assert rc == 1
        assert {c["customer"] for c in by_id(checks, "publication")} == {"acme", "globex"}
        rc, checks = s.preflight("--customer", "globex")
        assert {c["customer"] for c in by_id(checks, "table_exists")} == {"globex"}
        assert "region = 'globex'" in by_id(checks, "publication")[0]["fix"]
        capsys.readouterr()
        assert main(["preflight", "--root", str(root), "--service", "orders",
                     "--environment", "dev", "--customer", "globx"]) == 2
        assert "did you mean globex" in capsys.readouterr().err
    finally:
        pg_server.drop_database(second)


def test_rls_isolation_needs_bypassrls(shop: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    groups = (shop.root / "server-groups.yaml").read_text()
    (shop.root / "server-groups.yaml").write_text(
        groups.replace("server_group_type: db-shared\n",
                       "server_group_type: db-shared\n    isolation: rls\n"))
    shop.sql("CREATE ROLE cdc_rls LOGIN REPLICATION PASSWORD 'Rls-Pw-123';"
             "GRANT SELECT ON ALL TABLES IN SCHEMA public TO cdc_rls")
    point_env_at(monkeypatch, shop.server, user="cdc_rls", password="Rls-Pw-123")
    try:
        rc, checks = shop.preflight()
        assert rc == 1
        assert status(checks, "bypass_rls") == {"fail"}
        assert by_id(checks, "bypass_rls")[0]["fix"] == 'ALTER ROLE "cdc_rls" BYPASSRLS;'
        shop.apply_fixes(checks)
        rc, checks = shop.preflight()
        assert rc == 0, [c for c in checks if c["status"] == "fail"]
        assert status(checks, "bypass_rls") == {"pass"}
    finally:
        shop.sql("DROP OWNED BY cdc_rls; DROP ROLE cdc_rls")


def test_no_rls_check_for_other_isolation(shop: Shop) -> None:
    _rc, checks = shop.preflight()
    assert not by_id(checks, "bypass_rls")


def test_configured_key_outside_replica_identity_fails(shop: Shop) -> None:
    """DELETE keys come from the old-row image: a key outside it arrives empty."""
    shop.service(ORDERS_SERVICE.replace("name: orders  # the main table\n          primary_key: id",
                                        "name: orders  # the main table\n"
                                        "          primary_key: [region, total]"))
    rc, checks = shop.preflight()
    assert rc == 1
    failing = by_id(checks, "key_in_replica_identity")
    assert [c["status"] for c in failing] == ["fail"]
    assert "region, total" in failing[0]["message"]
    shop.apply_fixes(checks)  # REPLICA IDENTITY FULL
    rc, checks = shop.preflight()
    assert status(checks, "key_in_replica_identity") == set()
    assert status(checks, "replica_identity") == {"pass"}


def test_numeric_without_precision_is_a_warning_with_its_fix(shop: Shop) -> None:
    """The JDBC sink makes an unconstrained numeric a double precision column (the
    e2e suite shows the rounding): warned, with the ALTER that gives it a scale."""
    shop.sql("ALTER TABLE public.order_lines ADD COLUMN prices numeric[]")
    rc, checks = shop.preflight()
    assert rc == 0  # a warning: a target table created beforehand keeps it exact
    warned = {c["subject"]: c for c in by_id(checks, "exact_numeric")}
    assert sorted(warned) == ["public.order_lines", "public.orders"]
    assert all(c["status"] == "warn" for c in warned.values())
    assert "(total)" in warned["public.orders"]["message"]
    assert "double precision" in warned["public.orders"]["message"]
    for c in warned.values():
        shop.sql("\n".join(line for line in c["fix"].splitlines() if not line.startswith("--")))
    rc, checks = shop.preflight()
    assert by_id(checks, "exact_numeric") == []

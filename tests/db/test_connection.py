"""Connecting from a server block: placeholders, timeouts, read-only, no password leaks."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cdc_generator import localpg
from cdc_generator.cli import main
from cdc_generator.config.repo import load_config
from cdc_generator.db import connection
from cdc_generator.errors import UsageError
from tests.db.repo import ORDERS_SERVICE, point_env_at, shop_groups, write_repo


def test_missing_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = write_repo(tmp_path, shop_groups("db"), {"orders": ORDERS_SERVICE})
    group = load_config(root).server_groups[0]
    for var in ("POSTGRES_SHOP_HOST", "POSTGRES_SHOP_PORT"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(UsageError, match="POSTGRES_SHOP_HOST is not set") as info:
        connection.target_for(group, group.databases[0], None)
    assert "server-groups.yaml:" in str(info.value)


def test_placeholders_resolve_inside_text(tmp_path: Path) -> None:
    root = write_repo(tmp_path, shop_groups("db").replace(
        "${POSTGRES_SHOP_HOST}", "db-${REGION}.example.com"), {"orders": ORDERS_SERVICE})
    group = load_config(root).server_groups[0]
    target = connection.target_for(group, group.databases[0], None, {
        "REGION": "eu", "POSTGRES_SHOP_PORT": "5433", "POSTGRES_SHOP_USER": "u",
        "POSTGRES_SHOP_PASSWORD": "pw"})
    assert (target.host, target.port, target.user, target.dbname) == (
        "db-eu.example.com", "5433", "u", "db")
    assert "pw" not in repr(target)


def test_session_is_read_only_and_time_bounded(pg_server: localpg.LocalPostgres,
                                               pg_db: str) -> None:
    target = connection.target_from_dsn(pg_server.dsn(pg_db))
    with connection.connect(target) as conn:
        row = conn.execute("SHOW default_transaction_read_only").fetchone()
        assert row == ("on",)
        row = conn.execute("SHOW statement_timeout").fetchone()
        assert row == ("30s",)
    with pytest.raises(connection.DatabaseError, match="read-only transaction"), \
            connection.connect(target) as conn:
        conn.execute("CREATE TABLE t (id int)")
    with pytest.raises(connection.DatabaseError, match="statement timeout"), \
            connection.connect(target, statement_timeout_ms=100) as conn:
        conn.execute("SELECT pg_sleep(2)")


def test_password_never_in_errors(pg_server: localpg.LocalPostgres) -> None:
    password = pg_server.password
    bad = connection.target_from_dsn(pg_server.dsn().replace(password, password + "x"))
    with pytest.raises(connection.DatabaseError) as info, connection.connect(bad):
        pass
    assert "password authentication failed" in str(info.value)
    assert password not in str(info.value)
    with pytest.raises(UsageError) as usage:
        connection.target_from_dsn(f"host=h password={password} nonsense")
    assert password not in str(usage.value)
    assert connection.redact(f"postgresql://u:{password}@h/db") == "postgresql://u:********@h/db"
    assert connection.redact(f"x password='{password}' y") == "x password=******** y"


def test_password_never_in_cli_output(pg_server: localpg.LocalPostgres, pg_db: str,
                                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                      capfd: pytest.CaptureFixture[str]) -> None:
    root = write_repo(tmp_path, shop_groups(pg_db), {"orders": ORDERS_SERVICE})
    point_env_at(monkeypatch, pg_server)
    with pg_server.connect(pg_db) as conn:
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    runs = [
        ["manage-service", "--root", str(root), "--service", "orders", "--inspect"],
        ["manage-service", "--root", str(root), "--service", "orders", "--inspect",
         "--format", "json"],
        ["preflight", "--root", str(root), "--service", "orders", "--environment", "dev"],
        ["preflight", "--root", str(root), "--service", "orders", "--environment", "dev",
         "--format", "json"],
        ["manage-service", "--root", str(root), "--service", "orders", "--inspect",
         "--dsn", pg_server.dsn(pg_db) + " nonsense"],
    ]
    for argv in runs:
        main(argv)
    monkeypatch.setenv("POSTGRES_SHOP_PASSWORD", pg_server.password[::-1])
    assert main(runs[0]) == 1
    out, err = capfd.readouterr()
    assert "public.orders" in out
    assert "password authentication failed" in err
    assert pg_server.password not in out + err
    assert pg_server.password[::-1] not in out + err


def test_unreachable_server_is_a_clean_error() -> None:
    target = connection.Target("127.0.0.1", "1", "u", "db", "secret-pw")
    with pytest.raises(connection.DatabaseError, match=r"cannot connect to u@127\.0\.0\.1:1/db") \
            as info, connection.connect(target, connect_timeout_s=2):
        pass
    assert "secret-pw" not in str(info.value)
    assert isinstance(info.value.__cause__, type(None))
    assert not isinstance(info.value, psycopg.Error)


@pytest.mark.parametrize("dsn", [
    "postgresql://u:s3cr%ZZet@127.0.0.1:1/db",  # bad percent-encoding inside the password
    "postgresql://u:s3cr%ZZet@127.0.0.1:1/db?sslmode",
    "postgresql://u@127.0.0.1:1/db?password=s3cr%ZZet",
    "host=h password='s3cr%ZZet",  # unterminated quote
    "host=h password=s3cr%ZZet nonsense",
    "host=h PASSWORD = s3cr%ZZet port",
    "postgresql://u:my s3cr%ZZet@h/db",  # a space in the password
    "postgresql://u@h/db?pass%77ord=s3cr%ZZet",  # the key percent-encoded
])
def test_an_unparsable_dsn_never_shows_its_password(dsn: str) -> None:
    with pytest.raises(UsageError) as info:
        connection.target_from_dsn(dsn)
    message = str(info.value)
    assert message.startswith("invalid --dsn: ")
    for piece in ("s3cr", "ZZet", "%ZZ"):
        assert piece not in message


def test_an_unparsable_dsn_without_password_says_why() -> None:
    with pytest.raises(UsageError, match=r"invalid --dsn: .*(missing|invalid|syntax)"):
        connection.target_from_dsn("host=h nonsense")

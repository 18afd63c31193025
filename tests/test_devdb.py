"""dev-db: seeded from the repository's own config, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cdc_generator import devdb
from cdc_generator.config.repo import load_config
from tests.db.repo import REPO_ROOT


def test_seed_plan_follows_the_config() -> None:
    plan = {db.name: db for db in devdb.seed_plan(load_config(REPO_ROOT), "nonprod")}
    assert sorted(plan) == ["adopus_acme", "adopus_db_directory_dev", "adopus_globex",
                            "adopus_initech"]
    directory = plan["adopus_db_directory_dev"]
    assert directory.schemas == ("public", "customer_a", "customer_b")
    assert {t.qualified if hasattr(t, "qualified") else f"{t.schema}.{t.name}"
            for t in directory.tables} >= {"customer_b.users", "public.countries"}
    ledger = next(t for t in plan["adopus_acme"].tables if t.name == "ledger_entries")
    assert ledger.filter_columns == ("owner_id",)
    assert dict(ledger.columns)["owner_id"] == "text"
    lines = next(t for t in plan["adopus_acme"].tables if t.name == "invoice_lines")
    assert lines.primary_key == ("invoice_id", "line_no")
    prod = {db.name for db in devdb.seed_plan(load_config(REPO_ROOT), "prod")}
    assert "adopus_db_directory_prod" in prod


def _pid_alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.mark.postgres
def test_dev_db_starts_seeds_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cdc_generator", "dev-db", "--root", str(REPO_ROOT)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    assert proc.stderr is not None
    out, err = "", ""
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)
        selector.register(proc.stderr, selectors.EVENT_READ)
        deadline = time.monotonic() + 90
        while "Press Ctrl-C" not in err and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                chunk = os.read(key.fd, 65536).decode()
                if key.fileobj is proc.stdout:
                    out += chunk
                else:
                    err += chunk
            assert proc.poll() is None, err
        exports = dict(line.removeprefix("export ").partition("=")[::2]
                       for line in out.splitlines())
        assert "password is printed below on purpose" in err
        assert set(exports) >= {"POSTGRES_ASMA_HOST", "POSTGRES_ASMA_PORT",
                                "POSTGRES_ADOPUS_PASSWORD", "POSTGRES_ADOPUS_USER"}
        match = re.search(r"\(pid (\d+),", err)
        assert match, err
        server_pid = int(match.group(1))
        with _connect(exports, "ADOPUS", "adopus_globex") as conn:
            rows = conn.execute("SELECT owner_id FROM public.ledger_entries ORDER BY 1").fetchall()
        assert rows == [("globex",), ("shared",)]
        with _connect(exports, "ASMA", "adopus_db_directory_dev") as conn:
            row = conn.execute("SELECT count(*) FROM customer_b.users").fetchone()
        assert row == (2,)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
        rest = proc.stderr.read().decode()
        assert rc == 0, err + rest
        assert "stopping PostgreSQL" in rest
        assert not _pid_alive(server_pid)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def _connect(exports: dict[str, str], group: str, dbname: str) -> psycopg.Connection[Any]:
    """Connect with the POSTGRES_<GROUP>_* settings that dev-db printed."""
    return psycopg.connect(host=exports[f"POSTGRES_{group}_HOST"],
                           port=exports[f"POSTGRES_{group}_PORT"],
                           user=exports[f"POSTGRES_{group}_USER"],
                           password=exports[f"POSTGRES_{group}_PASSWORD"],
                           dbname=dbname)

"""dev-db: seeded from the repository's own config, stopped cleanly by Ctrl-C."""

from __future__ import annotations

import os
import re
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
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


@pytest.fixture
def scratch_tmp() -> Iterator[Path]:
    """dev-db's $TMPDIR: a private folder the server user can reach (as root the
    server runs as `nobody`, who cannot enter pytest's own tmp_path)."""
    path = Path(tempfile.mkdtemp(prefix="devdb-test-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


class DevDbProcess:
    """`cdc-generator dev-db` as a child process, its output read as it comes."""

    def __init__(self, tmpdir: Path, *extra: str, ignore_sigint: bool) -> None:
        # ignore_sigint: start it the way a non-interactive shell starts a
        # background job (`cdc-generator dev-db &`), with SIGINT ignored
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cdc_generator", "dev-db", "--root", str(REPO_ROOT), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmpdir)},
            preexec_fn=_ignore_sigint if ignore_sigint else None)  # noqa: PLW1509
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.out, self.err = "", ""
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.selector.register(self.proc.stderr, selectors.EVENT_READ)

    def read_until(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.err:
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n{self.err}"
            for key, _ in self.selector.select(timeout=1):
                chunk = os.read(key.fd, 65536).decode()
                if key.fileobj is self.proc.stdout:
                    self.out += chunk
                else:
                    self.err += chunk
            assert self.proc.poll() is None, self.err

    def stop(self, sig: signal.Signals) -> tuple[int, str]:
        """Send `sig`; the exit code and the rest of stderr, within 30 s."""
        assert self.proc.stderr is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        return rc, self.err + self.proc.stderr.read().decode()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.postgres
@pytest.mark.parametrize(("sig", "ignore_sigint"), [
    (signal.SIGINT, False),  # Ctrl-C in a terminal
    (signal.SIGINT, True),  # kill -INT of a background job: SIGINT was ignored at start
    (signal.SIGTERM, True),
], ids=["sigint", "sigint-to-a-background-job", "sigterm"])
def test_dev_db_starts_seeds_and_stops(sig: signal.Signals, ignore_sigint: bool,
                                       scratch_tmp: Path) -> None:
    dev = DevDbProcess(scratch_tmp, ignore_sigint=ignore_sigint)
    try:
        dev.read_until("Press Ctrl-C")
        exports = dict(line.removeprefix("export ").partition("=")[::2]
                       for line in dev.out.splitlines())
        assert "password is printed below on purpose" in dev.err
        assert set(exports) >= {"POSTGRES_ASMA_HOST", "POSTGRES_ASMA_PORT",
                                "POSTGRES_ADOPUS_PASSWORD", "POSTGRES_ADOPUS_USER"}
        match = re.search(r"\(pid (\d+),", dev.err)
        assert match, dev.err
        server_pid = int(match.group(1))
        [data_dir] = scratch_tmp.glob("cdc-generator-pg-*")
        with _connect(exports, "ADOPUS", "adopus_globex") as conn:
            rows = conn.execute("SELECT owner_id FROM public.ledger_entries ORDER BY 1").fetchall()
        assert rows == [("globex",), ("shared",)]
        with _connect(exports, "ASMA", "adopus_db_directory_dev") as conn:
            row = conn.execute("SELECT count(*) FROM customer_b.users").fetchone()
        assert row == (2,)
        rc, err = dev.stop(sig)
        assert rc == 0, err
        assert "stopping PostgreSQL" in err
        assert not _pid_alive(server_pid)
        assert not data_dir.exists(), "the server's temp dir is removed"
    finally:
        dev.close()


@pytest.mark.postgres
def test_exports_are_shell_text_and_the_env_file_goes_with_the_server(
        scratch_tmp: Path, tmp_path: Path) -> None:
    env_file = tmp_path / "dev-db.env"
    dev = DevDbProcess(scratch_tmp, "--env-file", str(env_file), ignore_sigint=False)
    try:
        dev.read_until("Press Ctrl-C")
        assert env_file.read_text() == dev.out, "the same export lines"
        assert env_file.stat().st_mode & 0o777 == 0o600, "it holds a password"
        shell = subprocess.run(  # what `. FILE` and eval give a shell
            ["bash", "-c", f'. "{env_file}" && eval "$OUT" && '
             'printf "%s %s" "$POSTGRES_ADOPUS_PORT" "$POSTGRES_ADOPUS_PASSWORD"'],
            env={**os.environ, "OUT": dev.out}, capture_output=True, text=True, check=True)
        exports = dict(line.removeprefix("export ").partition("=")[::2]
                       for line in dev.out.splitlines())
        port, password = shell.stdout.split(" ")
        assert port == exports["POSTGRES_ADOPUS_PORT"]
        assert password == shlex.split(exports["POSTGRES_ADOPUS_PASSWORD"])[0]
        # the publication the source needs, as generated/sql/ has it
        with _connect({k: shlex.split(v)[0] for k, v in exports.items()}, "ADOPUS",
                      "adopus_acme") as conn:
            rows = conn.execute("SELECT tablename, rowfilter FROM pg_publication_tables "
                                "WHERE pubname = 'cdc_accounting_acme_nonprod' "
                                "AND schemaname = 'public' ORDER BY 1").fetchall()
        assert rows == [("invoice_lines", None), ("invoices", None),
                        ("ledger_entries", "(owner_id = 'acme'::text)")]
        rc, err = dev.stop(signal.SIGINT)
        assert rc == 0, err
        assert not env_file.exists()
    finally:
        dev.close()


@pytest.mark.postgres
def test_a_signal_during_start_up_stops_it_and_leaves_nothing(scratch_tmp: Path) -> None:
    dev = DevDbProcess(scratch_tmp, ignore_sigint=True)
    try:
        deadline = time.monotonic() + 60
        while not list(scratch_tmp.glob("cdc-generator-pg-*/data")):  # initdb has begun
            assert time.monotonic() < deadline, "dev-db made no data directory"
            assert dev.proc.poll() is None
            time.sleep(0.01)
        rc, err = dev.stop(signal.SIGINT)
        assert rc == 0, err
        assert "Traceback" not in err
        assert "Press Ctrl-C" not in err, "stopped before it was ready"
        assert list(scratch_tmp.iterdir()) == [], "nothing is left in $TMPDIR"
        assert _processes_in(scratch_tmp) == []
    finally:
        dev.close()


def _processes_in(folder: Path) -> list[int]:
    """Live processes whose command line names `folder` (a postgres left running)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and str(folder).encode() in cmdline and _pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def _connect(exports: dict[str, str], group: str, dbname: str) -> psycopg.Connection[Any]:
    """Connect with the POSTGRES_<GROUP>_* settings that dev-db printed."""
    return psycopg.connect(host=exports[f"POSTGRES_{group}_HOST"],
                           port=exports[f"POSTGRES_{group}_PORT"],
                           user=exports[f"POSTGRES_{group}_USER"],
                           password=exports[f"POSTGRES_{group}_PASSWORD"],
                           dbname=dbname)

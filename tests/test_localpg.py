"""Tests for cdc_generator.localpg against real PostgreSQL servers."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from cdc_generator import localpg, procs
from cdc_generator.localpg import install

pytestmark = pytest.mark.postgres


def _pid_gone(pid: int) -> bool:
    """True if no live process has this pid (a zombie counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    except OSError:
        pass
    else:
        return "\nState:\tZ" in status
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _wait_gone(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_gone(pid):
            return True
        time.sleep(0.05)
    return _pid_gone(pid)


def _processes_using(path: Path) -> list[int]:
    """PIDs of live processes whose command line mentions ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if str(path).encode() in cmdline and not _pid_gone(int(proc.name)):
            found.append(int(proc.name))
    return found


@pytest.fixture
def own_server() -> Iterator[localpg.LocalPostgres]:
    """A private server for tests that restart or stop it."""
    server = localpg.start()
    try:
        yield server
    finally:
        server.stop()


# ------------------------------------------------------------------ shared server


def test_connects_with_password(pg_server: localpg.LocalPostgres) -> None:
    assert pg_server.host == "127.0.0.1"
    assert pg_server.user == "postgres"
    assert len(pg_server.password) >= 20
    with pg_server.connect() as conn:
        row = conn.execute(
            "SELECT current_user, inet_server_addr()::text, inet_server_port()"
        ).fetchone()
    assert row == ("postgres", "127.0.0.1/32", pg_server.port)


def test_dsn_and_url_connect(pg_server: localpg.LocalPostgres) -> None:
    assert f"password={pg_server.password}" in pg_server.dsn()
    for target in (pg_server.dsn(), pg_server.url()):
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_wal_level_logical_and_network_settings(pg_server: localpg.LocalPostgres) -> None:
    with pg_server.connect() as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
        assert conn.execute("SHOW unix_socket_directories").fetchone() == ("",)
        assert conn.execute("SHOW max_replication_slots").fetchone() == ("20",)
        assert conn.execute("SHOW password_encryption").fetchone() == ("scram-sha-256",)


def test_password_is_required(
    pg_server: localpg.LocalPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGPASSWORD", raising=False)
    base = (
        f"host={pg_server.host} port={pg_server.port} user={pg_server.user} "
        f"dbname=postgres passfile={os.devnull} connect_timeout=5"
    )
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(base).close()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(base, password="wrong").close()


def test_replication_connection(pg_server: localpg.LocalPostgres, pg_db: str) -> None:
    """Debezium connects with the replication protocol; pg_hba must allow it."""
    with psycopg.connect(pg_server.dsn(pg_db) + " replication=database") as conn:
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
        assert result.status == psycopg.pq.ExecStatus.TUPLES_OK
        assert result.get_value(0, 3) == pg_db.encode()


def test_pg_db_fixture(pg_server: localpg.LocalPostgres, pg_db: str) -> None:
    with pg_server.connect(pg_db, autocommit=False) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        assert conn.execute("SELECT current_database(), count(*) FROM t").fetchone() == (
            pg_db,
            1,
        )


def test_drop_database_with_replication_slot(pg_server: localpg.LocalPostgres) -> None:
    pg_server.create_database("localpg_slotdb")
    with pg_server.connect("localpg_slotdb") as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('localpg_slot', 'pgoutput')")
    pg_server.drop_database("localpg_slotdb")
    with pg_server.connect() as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'localpg_slotdb'"
        ).fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'localpg_slot'"
        ).fetchone() == (0,)


# ------------------------------------------------------------------ private servers


def test_restart_with_changed_settings() -> None:
    with localpg.start(settings={"wal_level": "replica"}) as pg:
        first_pid, port = pg.pid, pg.port
        with pg.connect() as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
            conn.execute("CREATE TABLE survives (x int)")
            conn.execute("ALTER SYSTEM SET wal_level = logical")
        pg.restart()
        assert pg.pid != first_pid
        assert _wait_gone(first_pid)
        assert pg.port == port
        with pg.connect() as conn:
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
            assert conn.execute("SELECT count(*) FROM survives").fetchone() == (0,)

        pg.restart(settings={"max_connections": "42"})
        with pg.connect() as conn:
            assert conn.execute("SHOW max_connections").fetchone() == ("42",)
            assert conn.execute("SHOW wal_level").fetchone() == ("logical",)


def test_immediate_restart_recovers_committed_rows_and_stays_down_as_asked() -> None:
    # committed means durable again (the test servers' default is off, for speed)
    with localpg.start(settings={"synchronous_commit": "on"}) as pg:
        first_pid, port = pg.pid, pg.port
        with pg.connect() as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept SELECT generate_series(1, 1000)")
        started = time.monotonic()
        pg.restart(mode="immediate", down_for=1.0)
        assert time.monotonic() - started >= 1.0
        assert _wait_gone(first_pid)
        assert pg.port == port
        with pg.connect() as conn:
            assert conn.execute("SELECT count(*) FROM kept").fetchone() == (1000,)
        # an immediate shutdown writes no checkpoint: the next start ran crash recovery
        assert "database system was interrupted" in pg.log_path.read_text() \
            or "redo starts" in pg.log_path.read_text()


def test_stop_leaves_no_process(own_server: localpg.LocalPostgres) -> None:
    pid, base_dir = own_server.pid, own_server.base_dir
    with own_server.connect() as conn:  # a backend is connected while we stop
        conn.execute("SELECT 1")
        own_server.stop()
    assert not own_server.running
    assert _pid_gone(pid)
    assert _processes_using(base_dir) == []
    assert not base_dir.exists()
    own_server.stop()  # idempotent


def test_context_manager_and_keep() -> None:
    with localpg.start(keep=True) as pg:
        pid, base_dir = pg.pid, pg.base_dir
    try:
        assert _pid_gone(pid)
        assert (base_dir / "data" / "PG_VERSION").is_file()
        assert pg.log_path.is_file()
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


def test_start_failure_reports_log_tail() -> None:
    with pytest.raises(localpg.LocalPostgresError) as excinfo:
        localpg.start(settings={"shared_buffers": "not-a-size"}, timeout=20)
    message = str(excinfo.value)
    assert "shared_buffers" in message
    assert "exited with code" in message
    base_dir = Path(message.split("log ", 1)[1].split(":\n", 1)[0]).parent
    try:
        assert base_dir.is_dir(), "keep_on_failure=True keeps the log"
    finally:
        shutil.rmtree(base_dir, ignore_errors=True)


def test_reserved_and_invalid_settings_rejected() -> None:
    with pytest.raises(ValueError, match="managed by localpg"):
        localpg.start(settings={"port": "5432"})
    with pytest.raises(ValueError, match="invalid PostgreSQL setting name"):
        localpg.start(settings={"bad name": "1"})


def test_port_clash_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        real_free_port = procs.free_port
        ports = iter([taken])
        monkeypatch.setattr(  # the first port the server is offered is taken
            procs, "free_port",
            lambda host=procs.LOCALHOST, avoid=None: next(ports, None) or real_free_port(
                host, avoid=avoid))
        with localpg.start() as pg:
            assert pg.port != taken
            with pg.connect() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert "Address already in use" in pg.log_path.read_text()


def test_server_dies_with_its_parent() -> None:
    """If the process that started the server is SIGKILLed, the server shuts down.

    A helper process made child subreaper inherits the orphaned postmaster and reaps
    it, so the test leaves no zombie behind on machines whose init does not reap.
    """
    starter = textwrap.dedent(
        """
        import time
        from cdc_generator import localpg
        pg = localpg.start()
        print(pg.pid, pg.base_dir, flush=True)
        time.sleep(120)
        """
    )
    reaper = textwrap.dedent(
        f"""
        import ctypes, os, signal, subprocess, sys, time
        PR_SET_CHILD_SUBREAPER = 36
        assert ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        child = subprocess.Popen([sys.executable, "-c", {starter!r}], stdout=subprocess.PIPE,
                                 text=True)
        with child:
            line = child.stdout.readline()
            child.send_signal(signal.SIGKILL)
        print(line.strip(), flush=True)
        if not line:
            sys.exit("starter printed nothing")
        pid = int(line.split()[0])
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reaped, _ = os.waitpid(-1, os.WNOHANG)
            if reaped == pid:
                print("reaped", flush=True)
                sys.exit(0)
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        sys.exit("postgres outlived its parent")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", reaper], capture_output=True, text=True, timeout=60, check=False
    )
    first_line = result.stdout.splitlines()[0] if result.stdout else ""
    if first_line:
        shutil.rmtree(first_line.split()[1], ignore_errors=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == "reaped"


@pytest.mark.skipif(os.geteuid() != 0, reason="the world-readable copy is only made as root")
def test_world_readable_copy_runs_as_unprivileged_user() -> None:
    pg_install = localpg.find_install()
    run_as = install.resolve_run_as()
    assert run_as is not None
    cache_base = Path(tempfile.mkdtemp(prefix="localpg-cache-test-", dir="/tmp"))
    try:
        os.chmod(cache_base, 0o755)
        root = install.world_readable_copy(pg_install, cache_base)
        assert root.is_relative_to(cache_base)
        assert install.probe(root, run_as) is None
        # a second call reuses the copy
        assert install.world_readable_copy(pg_install, cache_base) == root
    finally:
        shutil.rmtree(cache_base, ignore_errors=True)

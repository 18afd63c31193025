"""One running postmaster: started on a free port, waited for, stopped by PID.

`postgres` runs as a direct child process (no `pg_ctl`, which double-forks and
leaves zombies on machines without a reaping init), in its own session (a
terminal's Ctrl-C reaches only us, and we stop it), and dies with the thread
that started it (PR_SET_PDEATHSIG), e.g. a test runner SIGKILLed by a CI timeout.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

from cdc_generator import procs
from cdc_generator.localpg.cluster import SUPERUSER, Cluster, check_settings, tail
from cdc_generator.localpg.install import LocalPostgresError

if TYPE_CHECKING:
    import psycopg

logger = logging.getLogger(__name__)

HOST: Final = procs.LOCALHOST
_PORT_ATTEMPTS: Final = 5
_POLL_INTERVAL: Final = 0.05
_STOP_TIMEOUT: Final = 15.0


def _quote_conninfo(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class LocalPostgres:
    """A running (or stopped) local PostgreSQL server; create it with `localpg.start`."""

    def __init__(self, cluster: Cluster, *, password: str, settings: Mapping[str, str],
                 keep: bool, die_with_parent: bool) -> None:
        self.cluster = cluster
        self.host: str = HOST
        self.port = 0
        self.user: str = SUPERUSER
        self.password = password
        self.base_dir = cluster.base_dir  # data/ and postgres.log; removed on a clean stop
        self.data_dir = cluster.data_dir
        self.log_path = cluster.log_path
        self.pid = 0
        self.settings = dict(settings)  # defaults + overrides, as written for the server
        self.keep = keep  # keep base_dir after a clean stop
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- connection info

    def conninfo(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq connection parameters (including the password)."""
        return {"host": self.host, "port": str(self.port), "user": self.user,
                "password": self.password, "dbname": dbname}

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq key=value conninfo string (including the password)."""
        return " ".join(f"{k}={_quote_conninfo(v)}" for k, v in self.conninfo(dbname).items())

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://`` URI (including the password)."""
        quote = urllib.parse.quote
        return (f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
                f"@{self.host}:{self.port}/{quote(dbname, safe='')}")

    def connect(self, dbname: str = "postgres",
                autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=autocommit)

    def create_database(self, name: str) -> None:
        from psycopg import sql

        with self.connect() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str, *, timeout: float = 10.0) -> None:
        """Drop a database even if it has sessions or logical replication slots."""
        import psycopg
        from psycopg import sql

        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while True:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))
                try:
                    conn.execute("SELECT pg_drop_replication_slot(slot_name) "
                                 "FROM pg_replication_slots WHERE database = %s", (name,))
                    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                        sql.Identifier(name)))
                    return
                except psycopg.errors.ObjectInUse:
                    # a walsender still holds a slot; it goes away once terminated
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(_POLL_INTERVAL)

    # ---------------------------------------------------------------- lifecycle

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def launch(self, timeout: float, prefer_port: int | None = None) -> None:
        """Start postgres on a free port (retrying on clashes) and wait until it is ready."""
        self.cluster.write_settings(self.settings)
        port = prefer_port or procs.free_port(HOST)
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.port = port
            self._spawn()
            if self._wait_ready(timeout, log_offset) == "ready":
                logger.debug("PostgreSQL ready on %s:%d (pid %d)", self.host, port, self.pid)
                return
            if attempt == _PORT_ATTEMPTS:
                break
            logger.info("port %d is taken; retrying with another port", port)
            port = procs.free_port(HOST, avoid=port)
        raise LocalPostgresError(f"PostgreSQL could not bind a port after {_PORT_ATTEMPTS} "
                                 f"attempts; log {self.log_path}:\n" + tail(self.log_path))

    def _spawn(self) -> None:
        cmd = [self.cluster.program("postgres"), "-D", str(self.data_dir), "-p", str(self.port),
               "-c", f"listen_addresses={self.host}", "-c", "unix_socket_directories="]
        # SIGINT (fast shutdown) when we die; it fires when the starting *thread*
        # exits, hence die_with_parent=False for servers started from short-lived threads
        preexec = procs.on_parent_death(signal.SIGINT) if self._die_with_parent else None
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd, start_new_session=True,
                    preexec_fn=preexec,  # noqa: PLW1509 (only prctl + getppid: procs.py)
                    **self.cluster.child_kwargs(log))
            except OSError as exc:
                raise LocalPostgresError(f"could not run postgres: {exc}") from exc
        self.pid = self._proc.pid
        with _live_lock:
            _live.add(self)

    def _wait_ready(self, timeout: float, log_offset: int) -> str:
        """Poll until a real connection succeeds; "ready" or "port-clash", else raise."""
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_error = "no connection attempt yet"
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                self._forget()
                if "Address already in use" in tail(self.log_path, 1000, log_offset):
                    return "port-clash"
                raise LocalPostgresError(
                    f"PostgreSQL exited with code {returncode} during startup; "
                    f"log {self.log_path}:\n" + tail(self.log_path, start=log_offset))
            answer = self._answer()
            if answer is None:
                return "ready"
            last_error = answer
            if time.monotonic() >= deadline:
                self.terminate(kill_after=5.0)
                raise LocalPostgresError(
                    f"PostgreSQL not ready within {timeout:g}s ({last_error}); "
                    f"log {self.log_path}:\n" + tail(self.log_path, start=log_offset))
            time.sleep(_POLL_INTERVAL)

    def _answer(self) -> str | None:
        """None when our postmaster says ready and answers a query; else why not."""
        import psycopg

        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        if not (len(lines) >= 8 and lines[0].strip() == str(self.pid)
                and lines[7].strip() in ("ready", "standby")):
            return "postmaster.pid does not say ready yet"
        try:
            with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                row = conn.execute("SELECT current_setting('data_directory')").fetchone()
        except psycopg.Error as exc:
            return str(exc).strip()
        if row is not None and Path(str(row[0])) == self.data_dir:
            return None
        return f"a different server answers on port {self.port}"  # someone else's

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def terminate(self, kill_after: float = _STOP_TIMEOUT) -> bool:
        """Stop the postmaster by PID and reap it; True if it shut down cleanly:
        fast shutdown (SIGINT), then immediate (SIGQUIT), then SIGKILL."""
        proc = self._proc
        if proc is None:
            return True
        try:
            escalation = ((signal.SIGINT, kill_after), (signal.SIGQUIT, 5.0),
                          (signal.SIGKILL, 10.0))
            try:
                clean = procs.stop(proc, escalation, name="PostgreSQL")
            except procs.ProcessError as exc:
                raise LocalPostgresError(str(exc)) from None
            return clean and proc.wait() == 0
        finally:
            self._proc = None
            self._forget()

    def restart(self, settings: Mapping[str, str] | None = None, *, timeout: float = 30.0,
                mode: Literal["fast", "immediate"] = "fast", down_for: float = 0.0) -> None:
        """Stop and start the same data dir, with ``settings`` merged into the current ones.

        ``mode`` is PostgreSQL's shutdown mode: ``fast`` (SIGINT: sessions ended, a
        checkpoint written) or ``immediate`` (SIGQUIT: no checkpoint, crash recovery on
        the next start, as after a power cut). The server stays down ``down_for``
        seconds. Settings changed with ``ALTER SYSTEM`` (postgresql.auto.conf) take
        precedence over these, as in any PostgreSQL server. The port is kept if it is
        still free.
        """
        if not (self.data_dir / "PG_VERSION").is_file():
            raise LocalPostgresError(f"cannot restart: {self.data_dir} is gone (stopped?)")
        if settings:
            self.settings.update(check_settings(settings))
        if mode == "immediate":
            self._immediate_shutdown()
        elif not self.terminate():
            raise LocalPostgresError("PostgreSQL did not shut down cleanly for restart; "
                                     f"log {self.log_path}:\n" + tail(self.log_path))
        if down_for > 0:
            time.sleep(down_for)
        self.launch(timeout, prefer_port=self.port)

    def _immediate_shutdown(self) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            procs.stop(proc, ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 10.0)), name="PostgreSQL")
        except procs.ProcessError as exc:
            raise LocalPostgresError(str(exc)) from None
        finally:
            self._proc = None
            self._forget()

    def stop(self, *, keep: bool | None = None) -> None:
        """Stop the server (fast shutdown, then escalating), reap it, remove its temp dir.

        The temp dir stays if ``keep`` (default: the ``keep`` given to `start`) or if
        the shutdown was not clean, so the log can be inspected.  Idempotent.
        """
        clean = self.terminate()
        keep = self.keep if keep is None else keep
        if not clean:
            logger.warning("PostgreSQL did not stop cleanly; kept %s", self.base_dir)
        elif not keep and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LocalPostgres {self.host}:{self.port} {state} {self.base_dir}>"


_live: set[LocalPostgres] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()

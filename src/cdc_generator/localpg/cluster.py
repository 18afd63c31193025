"""A fresh data directory: its settings, `initdb`, and how the server programs run.

The settings the launcher owns (port, listen address, socket directory) are not
here: they go on the postgres command line (server.py), so neither `settings=`
nor `ALTER SYSTEM` can move the server off 127.0.0.1 or its port.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

from cdc_generator.localpg.install import LocalPostgresError, RunAs, program

SUPERUSER: Final = "postgres"

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

#: Settings the launcher owns: passed on the command line, never from ``settings=``.
RESERVED_SETTINGS: Final = frozenset(
    {"port", "listen_addresses", "unix_socket_directories", "data_directory", "hba_file"}
)

SETTINGS_FILE: Final = "cdc_generator.conf"
_SETTING_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_LOG_TAIL_LINES: Final = 40


def check_settings(settings: Mapping[str, str]) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in settings.items():
        if not _SETTING_NAME_RE.fullmatch(name):
            raise ValueError(f"invalid PostgreSQL setting name: {name!r}")
        if name.lower() in RESERVED_SETTINGS:
            raise ValueError(f"setting {name!r} is managed by localpg and cannot be overridden")
        checked[name] = str(value)
    return checked


def _quote_conf(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def tail(path: Path, lines: int = _LOG_TAIL_LINES, start: int = 0) -> str:
    """The last `lines` lines of a log from byte `start` on."""
    try:
        with path.open("rb") as fh:
            fh.seek(start)
            data = fh.read()
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    text = data.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.splitlines()[-lines:]) or "(empty)"


@dataclass(frozen=True)
class Cluster:
    """One server's files: `base_dir` holds `data/` and `postgres.log`."""

    install_root: Path  # the server tree to run (the install, or a readable copy)
    base_dir: Path
    run_as: RunAs | None  # the unprivileged user, when we are root

    @property
    def data_dir(self) -> Path:
        return self.base_dir / "data"

    @property
    def log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def program(self, name: str) -> str:
        return str(program(self.install_root, name))

    def child_kwargs(self, log: IO[bytes]) -> dict[str, Any]:
        """How initdb and postgres run: no input, output to our log, in our base
        directory, a clean environment, as the unprivileged user when we are root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        env.pop("LANG", None)
        env.pop("LANGUAGE", None)
        return {
            "stdin": subprocess.DEVNULL,
            "stdout": log,
            "stderr": subprocess.STDOUT,
            "cwd": self.base_dir,
            "env": env,
            **(self.run_as.popen_kwargs() if self.run_as else {}),
        }

    def write_settings(self, settings: Mapping[str, str]) -> None:
        lines = ["# written by cdc_generator.localpg; overridden by postgresql.auto.conf"]
        lines += [f"{k} = {_quote_conf(v)}" for k, v in settings.items()]
        path = self.data_dir / SETTINGS_FILE
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)

    def initdb(self, password: str, timeout: float) -> None:
        """Create the data directory, the superuser with `password`, and the
        include of our settings file."""
        pwfile = self.base_dir / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            if self.run_as is not None:
                os.fchown(fd, self.run_as.uid, self.run_as.gid)
            os.write(fd, password.encode() + b"\n")
        finally:
            os.close(fd)
        cmd = [self.program("initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
               f"--pwfile={pwfile}", "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
               "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        try:
            returncode = self._run_initdb(cmd, timeout)
        finally:
            pwfile.unlink(missing_ok=True)
        if returncode != 0:
            raise LocalPostgresError(f"initdb failed (exit {returncode}); log "
                                     f"{self.log_path}:\n" + tail(self.log_path))
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write(f"\ninclude = '{SETTINGS_FILE}'\n")

    def _run_initdb(self, cmd: list[str], timeout: float) -> int:
        """initdb's exit code. initdb runs in a process group of its own, with the
        bootstrap server it starts: stopped early (timeout, Ctrl-C), the whole
        group is killed, so nothing goes on writing into a data directory that
        the caller is about to remove."""
        with self.log_path.open("ab") as log:
            try:
                proc = subprocess.Popen(cmd, start_new_session=True, **self.child_kwargs(log))
            except OSError as exc:
                raise LocalPostgresError(f"could not run initdb: {exc}") from exc
        try:
            return proc.wait(timeout=timeout)
        except BaseException as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            # reaped with waitpid itself: an interrupt inside Popen.wait may have left
            # Popen's own lock taken, and a second Popen.wait would then block for ever
            with contextlib.suppress(ChildProcessError):
                os.waitpid(proc.pid, 0)
            proc.returncode = -signal.SIGKILL
            if isinstance(exc, subprocess.TimeoutExpired):
                raise LocalPostgresError(
                    f"initdb did not finish within {timeout:g}s; log {self.log_path}:\n"
                    + tail(self.log_path)) from None
            raise


def remove_tree(path: Path) -> None:
    """Remove `path`, trying again briefly while killed processes finish dying."""
    for _ in range(40):
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            return
        time.sleep(0.05)

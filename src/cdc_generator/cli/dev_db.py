"""`cdc-generator dev-db`: a throwaway local PostgreSQL seeded from this repository's config."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdc_generator import devdb
    from cdc_generator.report import Report


# Ctrl-C (SIGINT) and SIGTERM both stop the server. Both handlers are installed
# here, not left to Python: Python installs its SIGINT handler only when SIGINT
# was not ignored at start, and a non-interactive shell starts every background
# job (`cmd &`, and so a test runner's children under it) with SIGINT ignored.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class Options:
    root: Path
    environment: str | None
    keep: bool
    env_file: Path | None
    label = "dev-db"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--environment", metavar="E",
                        help="create E's database names (default: the first environment)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data directory after stopping")
    parser.add_argument("--env-file", type=Path, metavar="FILE",
                        help="also write the `export` lines to FILE once the server is ready "
                             "(for `. FILE` in another shell; removed when dev-db stops)")


def options(args: argparse.Namespace) -> Options:
    return Options(args.root, args.environment, args.keep, args.env_file)


class _Stop:
    """The stop signals' handler. While the server starts, a signal aborts the
    start (KeyboardInterrupt: localpg and devdb remove what they made); once it
    serves, the signal only asks the wait loop to end, so no exception can land
    inside subprocess's bookkeeping of the server process."""

    def __init__(self) -> None:
        self.requested = False
        self.serving = False
        self.previous = {sig: signal.signal(sig, self) for sig in _STOP_SIGNALS}

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self.serving:
            raise KeyboardInterrupt

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run(options: Options) -> Report:
    from cdc_generator import devdb, generate
    from cdc_generator.config.repo import load_config
    from cdc_generator.report import EXIT_OK, Report

    config = load_config(options.root)
    environment = options.environment or config.environments[0].name
    generate.check_selection(config, generate.Selection(None, environment))
    stop = _Stop()  # before the server starts, so that no signal leaves it behind
    try:
        dev = devdb.start(config, environment, keep=options.keep)
    except KeyboardInterrupt:
        stop.restore()
        return Report(options.label, EXIT_OK, messages=("stopped before PostgreSQL was ready",))
    except BaseException:
        stop.restore()
        raise
    try:
        return _ready(options, dev, stop)
    except BaseException:  # e.g. --env-file cannot be written: nothing is left running
        dev.server.stop()
        stop.restore()
        raise


def _ready(options: Options, dev: devdb.DevDb, stop: _Stop) -> Report:
    import shlex

    from cdc_generator.report import Report

    server = dev.server
    names = ", ".join(db.name for db in dev.databases)
    exports = "".join(f"export {name}={shlex.quote(value)}\n" for name, value in dev.exports)
    if options.env_file is not None:
        _write_private(options.env_file, exports)
    return Report(options.label, result={
        "host": server.host, "port": server.port, "pid": server.pid,
        "data_dir": str(server.data_dir), "databases": [db.name for db in dev.databases],
        "exports": dict(dev.exports), "notes": list(dev.notes)},
        output=exports,
        messages=(f"PostgreSQL on {server.host}:{server.port} (pid {server.pid}, data "
                  f"{server.data_dir}) with databases: {names}",
                  "This is a throwaway local server, so its password is printed below on "
                  "purpose. Export these (or `. FILE` of --env-file), then run manage-service "
                  "/ preflight:",
                  *(f"note: {note}" for note in dev.notes), "Press Ctrl-C to stop."),
        hold=lambda: _serve(dev, stop, options.env_file))


def _write_private(path: Path, text: str) -> None:
    """`text` into `path`, readable by its owner only (it holds a password), whole."""
    import os

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _serve(dev: devdb.DevDb, stop: _Stop, env_file: Path | None) -> int:
    """Wait for Ctrl-C (or SIGTERM), then stop the server; the exit code."""
    from cdc_generator.report import EXIT_FAIL, EXIT_OK

    server = dev.server
    try:
        stop.serving = True
        while not stop.requested and server.running:
            time.sleep(0.2)  # a signal wakes it: its handler returns, sleep goes on
        if not stop.requested:
            sys.stderr.write(f"PostgreSQL exited unexpectedly; log {server.log_path}\n")
            return EXIT_FAIL
        sys.stderr.write("stopping PostgreSQL\n")
        return EXIT_OK
    finally:
        for sig in _STOP_SIGNALS:  # a second Ctrl-C must not cut the stop short
            signal.signal(sig, signal.SIG_IGN)
        server.stop()
        if env_file is not None:
            env_file.unlink(missing_ok=True)
        stop.restore()

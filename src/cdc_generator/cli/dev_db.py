"""`cdc-generator dev-db`: a throwaway local PostgreSQL seeded from this repository's config."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType

from cdc_generator.cli import common

HELP = "start a local PostgreSQL seeded with the config's databases and tables (Ctrl-C stops it)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--environment", metavar="E",
                        help="create E's database names (default: the first environment)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the data directory after stopping")


# Ctrl-C (SIGINT) and SIGTERM both stop the server. Both handlers are installed
# here, not left to Python: Python installs its SIGINT handler only when SIGINT
# was not ignored at start, and a non-interactive shell starts every background
# job (`cmd &`, and so a test runner's children under it) with SIGINT ignored.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Stop:
    """The stop signals' handler. While the server starts, a signal aborts the
    start (KeyboardInterrupt: localpg and devdb remove what they made); once it
    serves, the signal only asks the wait loop to end, so no exception can land
    inside subprocess's bookkeeping of the server process."""

    def __init__(self) -> None:
        self.requested = False
        self.serving = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if not self.serving:
            raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from cdc_generator import devdb, generate
    from cdc_generator.config.repo import load_config

    def body() -> int:
        config = load_config(args.root)
        environment = args.environment or config.environments[0].name
        generate.check_selection(config, generate.Selection(None, environment))
        stop = _Stop()
        previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
        dev: devdb.DevDb | None = None
        try:
            dev = devdb.start(config, environment, keep=args.keep)
            server = dev.server
            names = ", ".join(db.name for db in dev.databases)
            sys.stderr.write(
                f"PostgreSQL on {server.host}:{server.port} (pid {server.pid}, data "
                f"{server.data_dir}) with databases: {names}\n"
                "This is a throwaway local server, so its password is printed below on "
                "purpose. Export these, then run manage-service / preflight:\n")
            for note in dev.notes:
                sys.stderr.write(f"note: {note}\n")
            for name, value in dev.exports:
                sys.stdout.write(f"export {name}={value}\n")
            sys.stdout.flush()
            sys.stderr.write("Press Ctrl-C to stop.\n")
            sys.stderr.flush()
            stop.serving = True
            while not stop.requested and server.running:
                time.sleep(0.2)  # a signal wakes it: its handler returns, sleep goes on
            if not stop.requested:
                sys.stderr.write(f"PostgreSQL exited unexpectedly; log {server.log_path}\n")
                return common.EXIT_FAIL
            sys.stderr.write("stopping PostgreSQL\n")
            return common.EXIT_OK
        except KeyboardInterrupt:
            sys.stderr.write("stopping PostgreSQL\n")
            return common.EXIT_OK
        finally:
            for sig in _STOP_SIGNALS:  # a second Ctrl-C must not cut the stop short
                signal.signal(sig, signal.SIG_IGN)
            if dev is not None:
                dev.server.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    return common.guarded(args, "dev-db", body)

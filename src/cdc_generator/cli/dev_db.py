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


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from cdc_generator import devdb, generate
    from cdc_generator.config.repo import load_config

    def body() -> int:
        config = load_config(args.root)
        environment = args.environment or config.environments[0].name
        generate.check_selection(config, generate.Selection(None, environment))
        previous = signal.signal(signal.SIGTERM, _interrupt)
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
            while server.running:
                time.sleep(0.2)
            sys.stderr.write(f"PostgreSQL exited unexpectedly; log {server.log_path}\n")
            return common.EXIT_FAIL
        except KeyboardInterrupt:
            sys.stderr.write("stopping PostgreSQL\n")
            return common.EXIT_OK
        finally:
            if dev is not None:
                dev.server.stop()
            signal.signal(signal.SIGTERM, previous)

    return common.guarded(args, "dev-db", body)

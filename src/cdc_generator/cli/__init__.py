"""Command line: parse arguments, call the library, choose a reporter, exit code.

Exit codes: 0 success; 1 invalid config, failed check or stale output;
2 usage error; 3 internal error (a bug: please report it).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from cdc_generator import __version__

# command name -> module with HELP, add_arguments(parser) and run(args) -> int.
# Modules keep heavy imports inside run() so `--help` stays fast.
COMMANDS = {
    "generate": "cdc_generator.cli.generate",
    "validate": "cdc_generator.cli.validate",
    "diff": "cdc_generator.cli.diff",
    "manage-service": "cdc_generator.cli.manage_service",
    "preflight": "cdc_generator.cli.preflight",
    "dev-db": "cdc_generator.cli.dev_db",
}


def _command(name: str) -> ModuleType:
    return importlib.import_module(COMMANDS[name])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdc-generator",
        description="Turn server-groups.yaml and services/*.yaml into Strimzi/Debezium "
                    "CDC pipelines under generated/.",
        epilog="Exit codes: 0 ok, 1 invalid config / failed check / stale output, "
               "2 usage error, 3 internal error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", type=Path, default=Path("."), metavar="DIR",
                        help="repository root holding server-groups.yaml (default: .)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        module = _command(name)
        command_parser = sub.add_parser(name, parents=[common], help=module.HELP,
                                        description=module.HELP)
        module.add_arguments(command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = _command(args.command).run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    return result

"""`cdc-generator diff`: what `generate` would change, as a unified diff."""

from __future__ import annotations

import argparse
import sys

from cdc_generator.cli import common

HELP = "show what `generate` would change, as a unified diff, without writing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only this service")
    parser.add_argument("--environment", help="only this environment")


def run(args: argparse.Namespace) -> int:
    from cdc_generator import generate

    def body() -> int:
        result = generate.check(args.root, generate.Selection(args.service, args.environment))
        sys.stdout.write(result.diff)
        if not result.changes.any:
            sys.stderr.write("no changes\n")
        return common.EXIT_OK

    return common.guarded(args, "diff", body)

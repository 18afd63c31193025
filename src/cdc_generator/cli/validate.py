"""`cdc-generator validate`: schema and semantic checks, nothing written."""

from __future__ import annotations

import argparse
import sys

from cdc_generator.cli import common

HELP = "check server-groups.yaml, services/ and templates without writing anything"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common.add_format(parser)


def run(args: argparse.Namespace) -> int:
    from cdc_generator import generate

    fmt = common.chosen_format(args)

    def body() -> int:
        plan, files = generate.desired_files(args.root, generate.Selection())
        if fmt == "json":
            common.emit_problems(fmt, "validate", [])
        else:
            sys.stderr.write(f"config is valid: {len(plan.pipelines)} pipelines, "
                             f"{len(files)} files\n")
        return common.EXIT_OK

    return common.guarded(args, "validate", body)

"""`cdc-generator diff`: what `generate` would change, as a unified diff."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdc_generator.report import Report


@dataclass(frozen=True)
class Options:
    root: Path
    service: str | None
    environment: str | None
    label = "diff"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only this service")
    parser.add_argument("--environment", help="only this environment")


def options(args: argparse.Namespace) -> Options:
    return Options(args.root, args.service, args.environment)


def run(options: Options) -> Report:
    from cdc_generator import generate
    from cdc_generator.cli.generate import freshness

    checked = generate.check(options.root, generate.Selection(options.service,
                                                              options.environment))
    return freshness(options.label, checked, stale_is_a_problem=False)

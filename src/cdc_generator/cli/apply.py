"""`cdc-generator apply`: perform what `plan` shows, in an order that loses no change."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cdc_generator.cli import plan as plan_command

if TYPE_CHECKING:
    from cdc_generator.report import Report


@dataclass(frozen=True)
class Options(plan_command.Options):
    """plan's options (without --since), and --prune."""

    prune: bool = False
    label = "apply"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    plan_command.add_live_arguments(parser)
    parser.add_argument("--prune", action="store_true",
                        help="also drop the slots, publications and control tables that no "
                             "configured pipeline uses (never without this)")


def options(args: argparse.Namespace) -> Options:
    return Options(args.root, args.environment, args.service, args.connect_url, args.dsn,
                   prune=args.prune)


def run(options: Options) -> Report:
    from cdc_generator import liveplan
    from cdc_generator.config.repo import load_config
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report

    plan = plan_command.gathered(options)
    outcomes = liveplan.apply(load_config(options.root), plan, prune=options.prune,
                              dsn=options.dsn)
    left = [o for o in outcomes if o.status != "done"]
    done = len(outcomes) - len(left)
    title = (f"apply for environment {options.environment}: {done} done"
             + (f", {len(left)} not done" if left else "")
             if plan.actions else f"apply for environment {options.environment}")
    return Report(options.label, EXIT_FAIL if left else EXIT_OK,
                  result=liveplan.payload(plan.actions, outcomes),
                  output=liveplan.render(plan.actions, title=title, outcomes=outcomes))

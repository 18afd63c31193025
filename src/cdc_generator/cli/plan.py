"""`cdc-generator plan`: what the live source databases need to match the config."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cdc_generator.cli import rest_url

if TYPE_CHECKING:
    from cdc_generator.liveplan import LivePlan
    from cdc_generator.report import Report


@dataclass(frozen=True)
class Options:
    root: Path
    environment: str
    service: str | None
    connect_url: str | None
    dsn: str | None
    since: str | None = None
    label = "plan"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_live_arguments(parser, environment_required=False)
    parser.add_argument("--since", metavar="REV",
                        help="no database: what merging changes compared with git revision "
                             "REV's generated/ (connectors added, changed, removed; tables to "
                             "backfill; slots to drop), for a pull request's job summary "
                             "(written to $GITHUB_STEP_SUMMARY with --format github); exit 0")


def add_live_arguments(parser: argparse.ArgumentParser, *,
                       environment_required: bool = True) -> None:
    """The arguments plan and apply share."""
    parser.add_argument("--environment", required=environment_required, metavar="E",
                        help="the environment whose source databases to compare"
                             + ("" if environment_required else
                                " (required but with --since)"))
    parser.add_argument("--service", metavar="S",
                        help="only this service's databases (slots and publications no "
                             "configured pipeline owns are named either way)")
    parser.add_argument("--connect-url", metavar="URL", type=rest_url,
                        help="the Kafka Connect REST URL: backfills wait until the connector "
                             "runs with the table")
    parser.add_argument("--dsn", help="connect with this libpq DSN instead of the server "
                                      "blocks (its dbname, if any, is replaced by each "
                                      "source database's)")


def options(args: argparse.Namespace) -> Options:
    from cdc_generator.errors import UsageError

    if args.since is None and args.environment is None:
        raise UsageError("plan needs --environment E (or --since REV, without a database)")
    if args.since is not None and (args.connect_url or args.dsn):
        raise UsageError("--since reads generated/ only: no --connect-url or --dsn with it")
    return Options(args.root, args.environment, args.service, args.connect_url, args.dsn,
                   args.since)


def gathered(options: Options) -> LivePlan:
    """The live plan of the options' environment (and service)."""
    from cdc_generator import generate, liveplan
    from cdc_generator.config.repo import load_config

    config = load_config(options.root)
    generate.check_selection(config, generate.Selection(options.service, options.environment))
    return liveplan.gather(config, options.environment, service=options.service,
                           connect_url=options.connect_url, dsn=options.dsn)


def run(options: Options) -> Report:
    from cdc_generator import liveplan
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report

    if options.since is not None:
        return _since(options)
    plan = gathered(options)
    title = (f"plan for environment {options.environment}"
             + (f", service {options.service}" if options.service else "")
             + f": {len(plan.actions)} action(s)")
    return Report(options.label, EXIT_FAIL if plan.actions else EXIT_OK,
                  result=liveplan.payload(plan.actions), output=liveplan.render(
                      plan.actions, title=title))


def _since(options: Options) -> Report:
    import os

    from cdc_generator import review
    from cdc_generator.errors import Problem
    from cdc_generator.report import EXIT_OK, Report

    assert options.since is not None
    found = review.review(options.root, options.since, options.environment or None)
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    messages: tuple[str, ...] = ()
    if summary and os.environ.get("GITHUB_ACTIONS") == "true":
        with open(summary, "a", encoding="utf-8") as out:
            out.write(review.markdown(found))
        messages = ("plan --since: the job summary has the review",)
    warnings = tuple(Problem("-", message=f"costly: {c}", severity="warning")
                     for c in found.costly())
    return Report(f"{options.label} --since", EXIT_OK, problems=warnings,
                  result=review.payload(found), output=review.text(found), messages=messages)

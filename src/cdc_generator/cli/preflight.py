"""`cdc-generator preflight`: is the live source ready for a service's connectors?"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cdc_generator.config.model import Config
    from cdc_generator.db.check import Check
    from cdc_generator.db.preflight import Source
    from cdc_generator.report import Report


@dataclass(frozen=True)
class Options:
    root: Path
    service: str
    environment: str
    customer: str | None
    dsn: str | None
    label = "preflight"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, metavar="S",
                        help="the service whose source databases to check")
    parser.add_argument("--environment", required=True, metavar="E",
                        help="the environment whose database names to use (name_by_environment)")
    parser.add_argument("--customer", metavar="C",
                        help="db-per-tenant: check this tenant only (default: every tenant)")
    parser.add_argument("--dsn", help="connect with this libpq DSN instead of the server block "
                                      "(its dbname, if any, replaces the config's)")


def options(args: argparse.Namespace) -> Options:
    return Options(args.root, args.service, args.environment, args.customer, args.dsn)


def run(options: Options) -> Report:
    from cdc_generator.config.repo import load_config
    from cdc_generator.db import preflight
    from cdc_generator.plan import build_plan
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report

    config = load_config(options.root)
    sources = _sources(options, config)
    configured = frozenset(p.source.slot_name for p in build_plan(config).pipelines)
    checks = preflight.run(sources, configured)
    where = sources[0].target.describe() if sources else "-"
    title = f"preflight {options.service}/{options.environment} on {where}"
    return Report(options.label, EXIT_FAIL if preflight.failed(checks) else EXIT_OK,
                  result={"service": options.service, "environment": options.environment,
                          "checks": [asdict(c) for c in checks]},
                  output=render_text(checks, title))


def _sources(options: Options, config: Config) -> list[Source]:
    """Where each pipeline of the service and environment reads from."""
    from cdc_generator import generate
    from cdc_generator.db import connection, preflight
    from cdc_generator.errors import UsageError
    from cdc_generator.manage import suggest
    from cdc_generator.plan import build_plan

    generate.check_selection(config, generate.Selection(options.service, options.environment))
    pipelines = build_plan(config, service=options.service,
                           environment=options.environment).pipelines
    if options.customer is not None:
        customers = [str(p.customer) for p in pipelines if p.customer is not None]
        if not customers:
            raise UsageError(f"--customer applies to db-per-tenant services; "
                             f"{options.service!r} is db-shared")
        pipelines = tuple(p for p in pipelines if p.customer == options.customer)
        if not pipelines:
            raise UsageError(f"unknown customer {options.customer!r}; "
                             f"{suggest(options.customer, customers)}")
    service = next(s for s in config.services if s.name == options.service)
    unscoped = frozenset(t.name for t in service.tables if t.schema is None)
    sources = []
    for p in pipelines:
        if options.dsn:
            target = connection.target_from_dsn(options.dsn, p.source.database, p.customer)
        else:
            group = config.group(p.group)
            assert group is not None
            target = connection.server_target(group, p.source.database, p.customer)
        sources.append(preflight.Source(p, target, unscoped))
    return sources


def render_text(checks: Sequence[Check], title: str) -> str:
    """The checks for people: one line each, with the fix of each failure."""
    from cdc_generator.db.check import PASS, WARN

    lines = [title]
    for c in checks:
        where = c.database + (f" ({c.customer})" if c.customer else "")
        lines.append(f"{c.status.upper():4} {c.check} [{where}]: {c.message}")
        if c.fix and c.status != PASS:
            lines.append("     fix:")
            lines.extend(f"       {line}" for line in c.fix.splitlines())
    failures = sum(c.failed for c in checks)
    warnings = sum(c.status == WARN for c in checks)
    lines.append(f"{len(checks)} checks: {failures} failed, {warnings} warnings")
    return "\n".join(lines) + "\n"


"""`cdc-generator preflight`: is the live source ready for a service's connectors?"""

from __future__ import annotations

import argparse
import sys

from cdc_generator.cli import common

HELP = "check the live source database is ready for a service's connectors (exit 1 if not)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", required=True, metavar="S")
    parser.add_argument("--environment", required=True, metavar="E")
    parser.add_argument("--customer", metavar="C",
                        help="db-per-tenant: check this tenant only (default: every tenant)")
    parser.add_argument("--dsn", help="connect with this libpq DSN instead of the server block "
                                      "(its dbname, if any, replaces the config's)")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def run(args: argparse.Namespace) -> int:
    from cdc_generator import generate
    from cdc_generator.config.repo import load_config
    from cdc_generator.db import connection, preflight
    from cdc_generator.errors import UsageError
    from cdc_generator.manage import suggest
    from cdc_generator.plan import build_plan

    def body() -> int:
        config = load_config(args.root)
        generate.check_selection(config, generate.Selection(args.service, args.environment))
        pipelines = build_plan(config, service=args.service,
                               environment=args.environment).pipelines
        if args.customer is not None:
            customers = [str(p.customer) for p in pipelines if p.customer is not None]
            if not customers:
                raise UsageError(f"--customer applies to db-per-tenant services; "
                                 f"{args.service!r} is db-shared")
            pipelines = tuple(p for p in pipelines if p.customer == args.customer)
            if not pipelines:
                raise UsageError(f"unknown customer {args.customer!r}; "
                                 f"{suggest(args.customer, customers)}")
        sources = []
        for p in pipelines:
            if args.dsn:
                target = connection.target_from_dsn(args.dsn, p.source.database, p.customer)
            else:
                group = config.group(p.group)
                assert group is not None
                target = connection.server_target(group, p.source.database, p.customer)
            sources.append(preflight.Source(p, target))
        checks = preflight.run(sources)
        if args.format == "json":
            sys.stdout.write(preflight.render_json(
                checks, service=args.service, environment=args.environment))
        else:
            where = sources[0].target.describe() if sources else "-"
            sys.stdout.write(preflight.render_text(
                checks, f"preflight {args.service}/{args.environment} on {where}"))
        return common.EXIT_FAIL if preflight.failed(checks) else common.EXIT_OK

    return common.guarded(args, "preflight", body)

"""`cdc-generator validate [--connect-url URL]`: check config, or live connectors."""

from __future__ import annotations

import argparse
import sys

from cdc_generator.cli import common

HELP = ("check server-groups.yaml, services/ and templates without writing anything; "
        "with --connect-url also ask a Kafka Connect cluster to validate generated/")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect-url", metavar="URL",
                        help="Kafka Connect REST URL: validate every generated connector there")
    parser.add_argument("--environment", help="only this environment's pipelines "
                        "(the whole config is still loaded and checked)")
    parser.add_argument("--service", help="only this service's pipelines "
                        "(the whole config is still loaded and checked)")
    common.add_format(parser)


def run(args: argparse.Namespace) -> int:
    from cdc_generator import generate

    fmt = common.chosen_format(args)

    def body() -> int:
        selection = generate.Selection(args.service, args.environment)
        plan, files = generate.render_all(args.root, selection)
        if args.connect_url:
            return _remote(args, fmt)
        if fmt == "json":
            common.emit_problems(fmt, "validate", [])
        else:
            sys.stderr.write(f"config is valid: {len(plan.pipelines)} pipelines, "
                             f"{files} files\n")
        return common.EXIT_OK

    return common.guarded(args, "validate", body)


def _remote(args: argparse.Namespace, fmt: str) -> int:
    from cdc_generator import connect

    connectors = connect.load_generated(
        args.root, environment=args.environment,
        service=args.service)
    if not connectors:
        sys.stderr.write("no generated connectors found: run `cdc-generator generate` first\n")
        return common.EXIT_FAIL
    problems = []
    for connector in connectors:
        found = connect.validate_connector(args.connect_url, connector)
        if fmt == "text":
            state = "ok" if not found else f"{len(found)} problem(s)"
            sys.stderr.write(f"{connector.path}: {state}\n")
        problems.extend(found)
    common.emit_problems(fmt, "validate --connect-url", problems, args.root)
    if not problems and fmt != "json":
        sys.stderr.write(f"{len(connectors)} connector(s) valid on {args.connect_url}\n")
    return common.EXIT_FAIL if problems else common.EXIT_OK

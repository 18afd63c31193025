"""`cdc-generator validate [--connect-url URL]`: check config, or live connectors."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cdc_generator.cli import rest_url

if TYPE_CHECKING:
    from cdc_generator.report import Report


@dataclass(frozen=True)
class Options:
    root: Path
    service: str | None
    environment: str | None
    connect_url: str | None

    @property
    def label(self) -> str:
        return "validate --connect-url" if self.connect_url else "validate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--connect-url", metavar="URL", type=rest_url,
                        help="Kafka Connect REST URL: validate every generated connector there")
    parser.add_argument("--environment", help="only this environment's pipelines "
                        "(the whole config is still loaded and checked)")
    parser.add_argument("--service", help="only this service's pipelines "
                        "(the whole config is still loaded and checked)")


def options(args: argparse.Namespace) -> Options:
    return Options(args.root, args.service, args.environment, args.connect_url)


def run(options: Options) -> Report:
    from cdc_generator import generate
    from cdc_generator.report import Report

    selection = generate.Selection(options.service, options.environment)
    plan, files = generate.render_all(options.root, selection)
    if options.connect_url:
        return _remote(options, options.connect_url)
    return Report(options.label, result={"pipelines": len(plan.pipelines), "files": files},
                  messages=(f"config is valid: {len(plan.pipelines)} pipelines, {files} files",))


def _remote(options: Options, url: str) -> Report:
    from cdc_generator import connect
    from cdc_generator.errors import CdcError
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report

    connectors = connect.load_generated(options.root, environment=options.environment,
                                        service=options.service)
    if not connectors:
        raise CdcError("no generated connectors found", "run `cdc-generator generate` first")
    problems, results, messages = [], [], []
    for connector in connectors:
        found = connect.validate_connector(url, connector)
        problems.extend(found)
        results.append({"path": connector.path, "name": connector.name, "problems": len(found)})
        messages.append(f"{connector.path}: {'ok' if not found else f'{len(found)} problem(s)'}")
    shown = connect.safe_url(url)
    if not problems:
        messages.append(f"{len(connectors)} connector(s) valid on {shown}")
    return Report(options.label, EXIT_FAIL if problems else EXIT_OK, tuple(problems),
                  result={"connect_url": shown, "connectors": results},
                  messages=tuple(messages))

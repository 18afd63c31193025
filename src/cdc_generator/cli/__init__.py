"""Command line: parse arguments into a command's options, run it, report once.

A command is a module of this package (listed in COMMANDS) with:

* `add_arguments(parser)` for its own arguments (every command also gets
  `--root` and `--format`; its line of help is in COMMANDS);
* `options(args) -> Options`: the typed options (a frozen dataclass with
  `root` and `label`, the command as the reports name it), refusing
  combinations that make no sense with a UsageError;
* `run(options) -> Report` (report.py): the library call, its result as data.

`main` does the rest for every command alike: the reporter (text, json,
github), the one mapping of errors to exit codes, and the writing. Modules keep
heavy imports inside `run`, so `--help` stays fast.

Exit codes: 0 success; 1 invalid config, failed check or stale output;
2 usage error; 3 internal error (a bug: please report it); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from cdc_generator import __version__
from cdc_generator.report import EXIT_BUG, EXIT_FAIL, EXIT_USAGE, FORMATS, NO_FILE, Report

# command -> its module and its line of help. Only the module of the command
# being run is imported: `generate` does not pay for building the others.
COMMANDS = {
    "generate": ("cdc_generator.cli.generate",
                 "render the pipelines into generated/ (or --check that they are fresh)"),
    "validate": ("cdc_generator.cli.validate",
                 "check server-groups.yaml, services/ and templates without writing "
                 "anything; with --connect-url also ask a Kafka Connect cluster to validate "
                 "generated/"),
    "diff": ("cdc_generator.cli.diff",
             "show what `generate` would change, as a unified diff, without writing "
             "(exit 1 when it would change anything)"),
    "manage-service": ("cdc_generator.cli.manage_service",
                       "inspect a service's source database and add or remove tables in "
                       "services/<S>.yaml"),
    "preflight": ("cdc_generator.cli.preflight",
                  "check the live source database is ready for a service's connectors "
                  "(exit 1 if not)"),
    "plan": ("cdc_generator.cli.plan",
             "compare the live source databases with the config and list every action "
             "that would bring them in line (exit 1 when there are actions)"),
    "apply": ("cdc_generator.cli.apply",
              "perform what `plan` lists: control tables, publications, backfills of added "
              "tables; with --prune also drop what no pipeline uses"),
    "dev-db": ("cdc_generator.cli.dev_db",
               "start a local PostgreSQL seeded with the config's databases and tables "
               "(Ctrl-C stops it)"),
}
EXIT_INTERRUPTED = 130


class Options(Protocol):
    @property
    def root(self) -> Path: ...

    @property
    def label(self) -> str: ...


class Command(Protocol):
    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def options(self, args: argparse.Namespace) -> Options: ...

    def run(self, options: Options) -> Report: ...


def rest_url(text: str) -> str:
    """The argparse type of --connect-url (cdc_generator.connect, imported when used)."""
    from cdc_generator.connect import rest_url as checked

    return checked(text)


def _command(name: str) -> Command:
    module: Command = importlib.import_module(COMMANDS[name][0])
    return module


def build_parser(only: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; the arguments of every command, or of the commands `only` names
    (the others are listed, with their help, but their modules not imported)."""
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
    common.add_argument("--format", choices=FORMATS, default=None,
                        help="text for people, json (one versioned document), or github "
                             "(text plus workflow annotations; the default under GitHub "
                             "Actions, else text)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, parents=[common], help=help_text,
                                        description=help_text)
        if only is None or name in only:
            _command(name).add_arguments(command_parser)
    return parser


def chosen_format(fmt: str | None) -> str:
    if fmt:
        return fmt
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the top level takes no option with a value: its first word is the command
    first = next((a for a in argv if not a.startswith("-")), "")
    args = build_parser(only=[first]).parse_args(argv)
    command, fmt, root = _command(args.command), chosen_format(args.format), args.root
    label: str = args.command
    try:
        options = command.options(args)
        label = options.label
        report = command.run(options)
    except BaseException as exc:  # every error becomes a report here
        report = failure(label, exc)
    code = _show(report, fmt, root)
    if report.hold is not None:
        try:
            code = report.hold()
        except BaseException as exc:
            code = _show(failure(label, exc), fmt, root)
    return code


def _show(report: Report, fmt: str, root: Path) -> int:
    from cdc_generator.report import render

    rendered = render(report, fmt, root=root)
    try:
        sys.stdout.write(rendered.out)
        sys.stdout.flush()
        sys.stderr.write(rendered.err)
        sys.stderr.flush()
    except BrokenPipeError:  # `| head`: the reader has all it wanted
        return EXIT_FAIL
    return report.exit_code


def failure(command: str, exc: BaseException) -> Report:
    """The one mapping of errors to reports and exit codes."""
    from cdc_generator.errors import CdcError, ConfigError, Problem, UsageError

    if isinstance(exc, ConfigError):
        return Report(command, EXIT_FAIL, exc.problems)
    if isinstance(exc, UsageError | CdcError):
        code = EXIT_USAGE if isinstance(exc, UsageError) else EXIT_FAIL
        return Report(command, code, (Problem(NO_FILE, message=str(exc), hint=exc.hint),))
    if isinstance(exc, KeyboardInterrupt):
        return Report(command, EXIT_INTERRUPTED, messages=("interrupted",))
    if isinstance(exc, BrokenPipeError):
        return Report(command, EXIT_FAIL)
    if not isinstance(exc, Exception):  # SystemExit and the like: not ours to report
        raise exc
    import traceback  # a bug: say so plainly, with the trace for the report

    sys.stderr.write("".join(traceback.format_exception(exc)))
    return Report(command, EXIT_BUG, (Problem(
        NO_FILE, message="internal error (this is a bug; please report it): "
                 f"{type(exc).__name__}, traceback above"),))

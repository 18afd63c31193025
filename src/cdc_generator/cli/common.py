"""What every command shares: format choice, problem output, error-to-exit mapping."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import TextIO

from cdc_generator import report
from cdc_generator.errors import CdcError, ConfigError, Problem, UsageError

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3


def add_format(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format", choices=report.FORMATS, default=None,
        help="output format (default: github under GitHub Actions, else text)",
    )


def chosen_format(args: argparse.Namespace) -> str:
    fmt: str | None = getattr(args, "format", None)
    if fmt:
        return fmt
    return "github" if os.environ.get("GITHUB_ACTIONS") == "true" else "text"


def emit_problems(fmt: str, command: str, problems: Sequence[Problem],
                  out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if fmt == "json":
        out.write(report.as_json(command, not problems, problems))
    elif fmt == "github":
        out.write(report.problems_github(problems))
        sys.stderr.write(report.problems_text(problems))
    else:
        sys.stderr.write(report.problems_text(problems))


def guarded(args: argparse.Namespace, command: str, body: Callable[[], int]) -> int:
    """Run `body`, turning our exceptions into reports and exit codes."""
    fmt = chosen_format(args)
    try:
        return body()
    except ConfigError as exc:
        emit_problems(fmt, command, exc.problems)
        return EXIT_FAIL
    except UsageError as exc:
        sys.stderr.write(f"cdc-generator {command}: error: {exc}\n")
        return EXIT_USAGE
    except CdcError as exc:
        emit_problems(fmt, command, [Problem("-", message=str(exc))])
        return EXIT_FAIL
    except Exception:  # a bug: say so plainly, with the trace for the report
        sys.stderr.write(traceback.format_exc())
        sys.stderr.write("cdc-generator: internal error (this is a bug; please report it)\n")
        return EXIT_BUG

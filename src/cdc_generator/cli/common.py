"""What every command shares: format choice, problem output, error-to-exit mapping."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

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
                  root: Path | None = None) -> None:
    """Report `problems`. JSON keeps paths relative to the repository root (its
    documented shape); text and GitHub annotations show them relative to the
    working directory, so `--root sub/dir` still points at the right files."""
    if fmt == "json":
        sys.stdout.write(report.as_json(command, not problems, problems))
        return
    shown = from_cwd(problems, root)
    if fmt == "github":
        sys.stdout.write(report.problems_github(shown))
    sys.stderr.write(report.problems_text(shown))


def from_cwd(problems: Sequence[Problem], root: Path | None) -> list[Problem]:
    prefix = os.path.relpath(root) if root is not None else "."
    if prefix == ".":
        return list(problems)
    return [
        replace(p, file=os.path.join(prefix, p.file))
        if p.file not in ("", "-") and not os.path.isabs(p.file) else p
        for p in problems
    ]


def guarded(args: argparse.Namespace, command: str, body: Callable[[], int]) -> int:
    """Run `body`, turning our exceptions into reports and exit codes."""
    fmt = chosen_format(args)
    try:
        return body()
    except ConfigError as exc:
        emit_problems(fmt, command, exc.problems, getattr(args, "root", None))
        return EXIT_FAIL
    except UsageError as exc:
        sys.stderr.write(f"cdc-generator {command}: error: {exc}\n")
        return EXIT_USAGE
    except CdcError as exc:
        emit_problems(fmt, command, [Problem("-", message=str(exc))])
        return EXIT_FAIL
    except Exception:  # a bug: say so plainly, with the trace for the report
        import traceback

        sys.stderr.write(traceback.format_exc())
        sys.stderr.write("cdc-generator: internal error (this is a bug; please report it)\n")
        return EXIT_BUG

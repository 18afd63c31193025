"""`cdc-generator generate [--service S] [--environment E] [--check]`."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cdc_generator import generate
    from cdc_generator.report import Report

HELP = "render the pipelines into generated/ (or --check that they are fresh)"


@dataclass(frozen=True)
class Options:
    root: Path
    service: str | None
    environment: str | None
    check: bool
    diff: bool  # with check: the unified diff of what is stale
    jobs: int | None

    @property
    def label(self) -> str:
        return "generate --check" if self.check else "generate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only this service")
    parser.add_argument("--environment", help="only this environment")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing stale, missing and orphaned files")
    parser.add_argument("--no-diff", action="store_true", help="with --check: omit the diff")
    parser.add_argument("--jobs", "-j", type=int, metavar="N",
                        help="render and write in up to N processes (default: "
                             "$CDC_GENERATOR_JOBS, else one per CPU; small plans use one)")


def options(args: argparse.Namespace) -> Options:
    from cdc_generator.errors import UsageError

    if args.no_diff and not args.check:
        raise UsageError("--no-diff applies to --check only (generate prints no diff)")
    return Options(args.root, args.service, args.environment, args.check,
                   not args.no_diff, args.jobs)


def run(options: Options) -> Report:
    from cdc_generator import generate
    from cdc_generator.report import Report, changes_payload

    selection = generate.Selection(options.service, options.environment)
    if options.check:
        checked = generate.check(options.root, selection, with_diff=options.diff,
                                 jobs=options.jobs)
        return freshness(options.label, checked, stale_is_a_problem=True)
    started = time.perf_counter()
    result = generate.generate(options.root, selection, jobs=options.jobs)
    seconds = time.perf_counter() - started
    changes = result.changes
    took = (f"{len(result.plan.pipelines)} pipelines, "
            f"{f'{result.jobs} processes, ' if result.jobs > 1 else ''}{seconds:.2f}s")
    if changes.any:
        said = (f"generated/: {len(changes.added)} added, {len(changes.changed)} changed, "
                f"{len(changes.removed)} removed, {len(changes.unchanged)} unchanged ({took})")
    else:
        said = (f"generated/ already up to date: nothing written "
                f"({len(changes.unchanged)} files, {took})")
    return Report(options.label, result={
        "files": changes_payload(changes), "unchanged": len(changes.unchanged),
        "pipelines": len(result.plan.pipelines), "jobs": result.jobs,
        "seconds": round(seconds, 3)}, messages=(said,))


def freshness(label: str, checked: generate.Result, *, stale_is_a_problem: bool) -> Report:
    """`generate --check` and `diff`: what differs between the config and
    generated/, as a unified diff; exit 1 when anything does."""
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report, changes_payload, stale_problems

    changes = checked.changes
    problems = tuple(stale_problems(changes)) if stale_is_a_problem else ()
    if not changes.any:
        said = (f"generated/ is up to date ({len(changes.unchanged)} files)"
                if stale_is_a_problem else "no changes")
    elif stale_is_a_problem:
        said = "generated/ is out of date: run `cdc-generator generate` and commit the result"
    else:
        said = (f"{len(changes.added)} to add, {len(changes.changed)} to change, "
                f"{len(changes.removed)} to remove: `cdc-generator generate` writes them")
    return Report(label, EXIT_FAIL if changes.any else EXIT_OK, problems,
                  result={"files": changes_payload(changes), "diff": checked.diff},
                  output=checked.diff, messages=(said,))

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


@dataclass(frozen=True)
class Options:
    root: Path
    service: str | None
    environment: str | None
    check: bool
    diff: bool  # with check: the unified diff of what is stale
    jobs: int | None
    pre_commit: bool = False  # the cdc-generate hook: see --pre-commit

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
    parser.add_argument("--pre-commit", action="store_true",
                        help="as the cdc-generate hook runs it: exit 1 when generated/ had to "
                             "change (the commit then picks the files up); an invalid config "
                             "gets one line, its problems are the cdc-validate hook's to list")


def options(args: argparse.Namespace) -> Options:
    from cdc_generator.errors import UsageError

    if args.no_diff and not args.check:
        raise UsageError("--no-diff applies to --check only (generate prints no diff)")
    if args.pre_commit and args.check:
        raise UsageError("--pre-commit writes generated/; --check writes nothing")
    return Options(args.root, args.service, args.environment, args.check,
                   not args.no_diff, args.jobs, args.pre_commit)


def run(options: Options) -> Report:
    from cdc_generator import generate
    from cdc_generator.errors import ConfigError
    from cdc_generator.report import EXIT_FAIL, EXIT_OK, Report, changes_payload

    selection = generate.Selection(options.service, options.environment)
    if options.check:
        checked = generate.check(options.root, selection, with_diff=options.diff,
                                 jobs=options.jobs)
        return freshness(options.label, checked, stale_is_a_problem=True)
    started = time.perf_counter()
    try:
        result = generate.generate(options.root, selection, jobs=options.jobs)
    except ConfigError as exc:
        if not options.pre_commit:
            raise
        return Report(options.label, EXIT_FAIL, messages=(
            f"cdc-generate: the config has {len(exc.problems)} problem(s), so generated/ was "
            "left as it is; the cdc-validate hook (`cdc-generator validate`) lists them",))
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
    messages: tuple[str, ...] = (said,)
    if options.pre_commit and changes.any:
        messages += ("cdc-generate: generated/ was out of date and has been regenerated; "
                     "add it to the commit",)
    return Report(options.label, EXIT_FAIL if options.pre_commit and changes.any else EXIT_OK,
                  result={"files": changes_payload(changes), "unchanged": len(changes.unchanged),
                          "pipelines": len(result.plan.pipelines), "jobs": result.jobs,
                          "seconds": round(seconds, 3)}, messages=messages)


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

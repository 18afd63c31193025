"""`cdc-generator generate [--service S] [--environment E] [--check]`."""

from __future__ import annotations

import argparse
import sys
import time

from cdc_generator.cli import common

HELP = "render the pipelines into generated/ (or --check that they are fresh)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", help="only this service")
    parser.add_argument("--environment", help="only this environment")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 listing stale, missing and orphaned files")
    parser.add_argument("--no-diff", action="store_true", help="with --check: omit the diff")
    parser.add_argument("--jobs", "-j", type=int, metavar="N",
                        help="render and write in up to N processes (default: "
                             "$CDC_GENERATOR_JOBS, else one per CPU; small plans use one)")
    common.add_format(parser)


def run(args: argparse.Namespace) -> int:
    from cdc_generator import generate, report

    selection = generate.Selection(args.service, args.environment)
    fmt = common.chosen_format(args)

    def body() -> int:
        from cdc_generator.errors import UsageError

        if args.no_diff and not args.check:
            raise UsageError("--no-diff applies to --check only (generate prints no diff)")
        started = time.perf_counter()
        if args.check:
            result = generate.check(args.root, selection, with_diff=not args.no_diff,
                                    jobs=args.jobs)
            problems = report.stale_problems(result.changes)
            if fmt == "json":
                sys.stdout.write(report.as_json("generate --check", not problems, problems,
                                                result.changes, diff=result.diff))
                return common.EXIT_FAIL if problems else common.EXIT_OK
            if problems:
                common.emit_problems(fmt, "generate --check", problems, args.root)
                sys.stdout.write(result.diff)
                sys.stderr.write("generated/ is out of date: run `cdc-generator generate` "
                                 "and commit the result\n")
                return common.EXIT_FAIL
            sys.stderr.write(f"generated/ is up to date ({len(result.changes.unchanged)} files)\n")
            return common.EXIT_OK
        result = generate.generate(args.root, selection, jobs=args.jobs)
        elapsed = time.perf_counter() - started
        changes = result.changes
        if fmt == "json":
            sys.stdout.write(report.as_json("generate", True, (), changes,
                                            seconds=round(elapsed, 3)))
        elif changes.any:
            sys.stderr.write(
                f"generated/: {len(changes.added)} added, {len(changes.changed)} changed, "
                f"{len(changes.removed)} removed, {len(changes.unchanged)} unchanged "
                f"({len(result.plan.pipelines)} pipelines, {_processes(result.jobs)}"
                f"{elapsed:.2f}s)\n")
        else:
            sys.stderr.write(f"generated/ already up to date: nothing written "
                             f"({len(changes.unchanged)} files, {_processes(result.jobs)}"
                             f"{elapsed:.2f}s)\n")
        return common.EXIT_OK

    return common.guarded(args, "generate --check" if args.check else "generate", body)


def _processes(jobs: int) -> str:
    return f"{jobs} processes, " if jobs > 1 else ""

"""`generate`, `generate --check`, `validate` and `diff` as library calls: config in, tree out.

Load, validate and plan run once; rendering, encoding and comparing with (and
writing into) the tree then stream file by file, split over `jobs` processes
(parallel.py) for large plans: no process holds the whole new tree.
"""

from __future__ import annotations

import difflib
import itertools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from cdc_generator import layout, output, parallel
from cdc_generator.config.model import Config
from cdc_generator.config.repo import load_config
from cdc_generator.errors import CdcError, UsageError
from cdc_generator.plan import Pipeline, Plan, build_plan
from cdc_generator.render import RenderedFile, Renderer

R = TypeVar("R")

# Below this many pipelines per process a fork costs more than it saves.
MIN_PIPELINES_PER_JOB = 100


@dataclass(frozen=True)
class Selection:
    service: str | None = None
    environment: str | None = None

    @property
    def scope(self) -> output.Scope:
        return output.Scope(self.service, self.environment)


@dataclass(frozen=True)
class Result:
    plan: Plan
    changes: output.Changes
    diff: str = ""
    jobs: int = 1


def check_selection(config: Config, selection: Selection) -> None:
    services = [s.name for s in config.services]
    if selection.service is not None and selection.service not in services:
        raise UsageError(_unknown("service", selection.service, services))
    environments = [e.name for e in config.environments]
    if selection.environment is not None and selection.environment not in environments:
        raise UsageError(_unknown("environment", selection.environment, environments))


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known) or 'none'}"
    return f"unknown {kind} {name!r}; {hint}"


def load_plan(root: Path, selection: Selection) -> Plan:
    config = load_config(root)
    check_selection(config, selection)
    return build_plan(config, service=selection.service, environment=selection.environment)


def job_count(plan: Plan, jobs: int | None) -> int:
    """Processes to use: `jobs` or $CDC_GENERATOR_JOBS when set (at most one per
    pipeline), else one per usable CPU for plans big enough to gain from it."""
    if jobs is None:
        env = os.environ.get(parallel.JOBS_ENV, "").strip()
        if env:
            try:
                jobs = int(env)
            except ValueError:
                raise UsageError(f"{parallel.JOBS_ENV}={env!r} is not a number") from None
    if jobs is not None and jobs < 1:
        raise UsageError(f"--jobs must be 1 or more, not {jobs}")
    if not parallel.can_fork():
        return 1
    if jobs is None:
        return max(1, min(parallel.usable_cpus(),
                          len(plan.pipelines) // MIN_PIPELINES_PER_JOB))
    return max(1, min(jobs, len(plan.pipelines)))


def _shards(plan: Plan, jobs: int) -> list[tuple[int, tuple[Pipeline, ...]]]:
    """Contiguous, near-equal shares of the pipelines; shard 0 also makes the
    plan-wide files (the kustomizations)."""
    n = len(plan.pipelines)
    bounds = [n * i // jobs for i in range(jobs + 1)]
    return [(i, plan.pipelines[bounds[i]:bounds[i + 1]]) for i in range(jobs)]


def _render_sharded(root: Path, selection: Selection, jobs: int | None,
                    consume: Callable[[Iterator[tuple[str, bytes]]], R]) -> tuple[
                        Plan, list[R], int]:
    """Load and plan once, then render every file, encoded, into `consume`: one
    call per shard of the pipelines, each in its own process (parallel.py)."""
    with parallel.LongLived() as heap:
        plan = load_plan(root, selection)
        renderer = Renderer(root)
        renderer.load_templates()  # errors surface here, once; compiled before any fork
        heap.built()
        count = job_count(plan, jobs)

        def shard(work: tuple[int, tuple[Pipeline, ...]]) -> R:
            index, pipelines = work
            files: Iterator[RenderedFile] = renderer.pipeline_files(plan, pipelines)
            if index == 0:
                files = itertools.chain(files, renderer.plan_files(plan))
            return consume((f.path, f.text.encode("utf-8")) for f in files)

        return plan, parallel.map_shards(shard, _shards(plan, count)), count


def render_all(root: Path, selection: Selection, *, jobs: int | None = None) -> tuple[Plan, int]:
    """`validate`: render every file (so template errors surface) and write
    nothing; returns the plan and the number of files."""
    def count(files: Iterator[tuple[str, bytes]]) -> int:
        return sum(1 for _ in files)

    plan, counts, _jobs = _render_sharded(root, selection, jobs, count)
    return plan, sum(counts)


def generate(root: Path, selection: Selection, *, jobs: int | None = None) -> Result:
    try:
        output.recover(root)
        staged = output.Staged(root, write=True)
        try:
            plan, parts, count = _render_sharded(root, selection, jobs, staged.put_all)
            changes = staged.commit([p.changes for p in parts], selection.scope)
        finally:
            staged.discard()
    except OSError as exc:  # the disk or the permissions, not the config: say which file
        raise CdcError(f"cannot write {layout.GENERATED_DIR}/: {_os_error(root, exc)}") from None
    return Result(plan, changes, jobs=count)


def _os_error(root: Path, exc: OSError) -> str:
    where = ""
    if exc.filename is not None:
        where = os.path.relpath(os.fsdecode(exc.filename), root)
    return f"{exc.strerror or exc}" + (f" ({where})" if where else "")


def check(root: Path, selection: Selection, *, with_diff: bool = True,
          jobs: int | None = None) -> Result:
    """Compare without writing: what is stale, missing or orphaned."""
    try:
        staged = output.Staged(root, write=False, keep_new=with_diff)
        plan, parts, count = _render_sharded(root, selection, jobs, staged.put_all)
    except OSError as exc:
        raise CdcError(f"cannot read {layout.GENERATED_DIR}/: {_os_error(root, exc)}") from None
    changes, _kept = staged.settle([p.changes for p in parts], selection.scope)
    if not with_diff:
        return Result(plan, changes, jobs=count)
    new: dict[str, bytes] = {}
    for part in parts:
        new.update(part.new)
    # the diff needs the old text of changed and removed files only
    existing = output.read_files(staged.target, [*changes.changed, *changes.removed])
    return Result(plan, changes, output.unified_diff(changes, new, existing), count)

"""`generate`, `generate --check` and `diff` as library calls: config in, tree out."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from cdc_generator import output
from cdc_generator.config.model import Config
from cdc_generator.config.repo import load_config
from cdc_generator.errors import UsageError
from cdc_generator.plan import Plan, build_plan
from cdc_generator.render import Renderer


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


def desired_files(root: Path, selection: Selection) -> tuple[Plan, dict[str, bytes]]:
    """Load, validate, plan and render: every file `generate` would write."""
    config = load_config(root)
    check_selection(config, selection)
    plan = build_plan(config, service=selection.service, environment=selection.environment)
    files = Renderer(root).render(plan)
    # encode while releasing the text: the tree is held once, as bytes, not twice
    files.reverse()
    desired = {}
    while files:
        file = files.pop()
        desired[file.path] = file.text.encode("utf-8")
    return plan, desired


def generate(root: Path, selection: Selection) -> Result:
    plan, desired = desired_files(root, selection)
    changes = output.write_tree(root, desired, selection.scope)
    return Result(plan, changes)


def check(root: Path, selection: Selection, *, with_diff: bool = True) -> Result:
    """Compare without writing: what is stale, missing or orphaned."""
    plan, desired = desired_files(root, selection)
    target = root / output.GENERATED_DIR
    changes, _found = output.compare_tree(desired, target, selection.scope)
    # the diff needs the old text of changed and removed files only
    existing = output.read_files(target, [*changes.changed, *changes.removed])
    diff = output.unified_diff(changes, desired, existing) if with_diff else ""
    return Result(plan, changes, diff)

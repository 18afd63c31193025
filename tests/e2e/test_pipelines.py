"""Whole pipelines on the real engine: generated sources AND sinks run together, and
after every phase of a workload every target table equals its source, row by row.

The scenarios (tests/e2e/scenarios.py) cover db-shared with isolation column, schema
and rls, and db-per-tenant; with and without row filters; composite and configured
keys; a row of each common type; TOASTed values left unchanged by an update; key
changes; rows moving across a row filter; TRUNCATE. This repository's own generated
nonprod pipelines run beside them, with their own workload.

The tests run in file order: each phase builds on the state the previous left. A
failure names the scenario, the tables, the key and both rows.
"""

from __future__ import annotations

import logging

import pytest

from . import scenarios
from .conftest import Pipelines
from .reconcile import Expectation, primary_key, wait_equal

pytestmark = pytest.mark.e2e

log = logging.getLogger(__name__)

#: how long the pipelines get to bring every target in line after a phase
DRAIN_S = 90.0

_applied: set[str] = set()


def _of(pipelines: Pipelines, scenario: str) -> list[Expectation]:
    chosen = [e for e in pipelines.expectations if e.scenario == scenario]
    assert chosen, f"no expectations for scenario {scenario!r}"
    return chosen


def _phase(pipelines: Pipelines, name: str) -> None:
    """Apply the workload phase `name` once, to every scenario's source databases and,
    where it has one, this repository's."""
    if name in _applied:
        return
    phase = next(p for p in scenarios.PHASES if p.name == name)
    scenarios.apply_phase(pipelines.source_pg, phase)
    repo = pipelines.repo_phases.get(name)
    if repo:
        scenarios.apply_phase(pipelines.source_pg, scenarios.Phase(name, repo))
    _applied.add(name)


def _equal(pipelines: Pipelines, scenario: str, phase: str) -> None:
    chosen = _of(pipelines, scenario)
    with pipelines.running.stack.keep_logs_on_failure(f"{scenario} after {phase}"):
        try:
            drained = wait_equal(pipelines.source_pg, pipelines.sink_pg, chosen,
                                 lag=pipelines.lag, timeout=DRAIN_S, what=f"after {phase}")
        except AssertionError as failed:
            evidence = pipelines.running.evidence(
                {e.sink_db for e in chosen}, {e.source.split(".", 1)[1] for e in chosen})
            raise AssertionError(f"{failed}\n{evidence}") from None
    log.info("%s after %s: %d rows equal in %.1fs", scenario, phase, drained.rows_compared,
             drained.seconds)


ALL = [*scenarios.SCENARIOS, "repo directory", "repo accounting"]


@pytest.mark.parametrize("scenario", ALL)
def test_snapshot(pipelines: Pipelines, scenario: str) -> None:
    """The rows that were there before the connectors started (filtered ones never)."""
    _equal(pipelines, scenario, "snapshot")


@pytest.mark.parametrize("scenario", ALL)
def test_target_keys_are_the_configured_keys(pipelines: Pipelines, scenario: str) -> None:
    """The sink created each target table with the configured key as primary key."""
    for e in _of(pipelines, scenario):
        got = primary_key(pipelines.sink_pg, e.sink_db, e.target)
        if not got:  # created only by the first record: an empty source has none yet
            continue
        assert got == e.key, f"{e.label}: target primary key {got}, configured {e.key}"


@pytest.mark.parametrize("scenario", ALL)
@pytest.mark.parametrize("phase", [p.name for p in scenarios.PHASES])
def test_phase(pipelines: Pipelines, phase: str, scenario: str) -> None:
    _phase(pipelines, phase)
    _equal(pipelines, scenario, phase)

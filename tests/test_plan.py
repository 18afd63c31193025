"""plan.py's collision check: every kind of shared name is found, in one environment only.

`_collisions` first asks a bulk test (`_any_shared`) whether anything is shared at
all; these tests make each kind of name shared between two real pipelines and
require the located problem, so a kind the quick test missed would fail here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest

from cdc_generator.claims import _collisions
from cdc_generator.config.model import Config
from cdc_generator.config.repo import load_config
from cdc_generator.plan import Pipeline, build_plan
from tests.helpers import GOLDEN


@pytest.fixture(scope="module")
def config() -> Config:
    return load_config(GOLDEN / "per-tenant" / "input")


def _same_env_pair(pipelines: list[Pipeline]) -> tuple[int, int]:
    for i, a in enumerate(pipelines):
        for j in range(i + 1, len(pipelines)):
            if pipelines[j].environment == a.environment:
                return i, j
    raise AssertionError("the golden estate needs two pipelines in one environment")


def _source(**changes: object) -> Callable[[Pipeline, Pipeline], Pipeline]:
    def take(first: Pipeline, second: Pipeline) -> Pipeline:
        values = {k: getattr(first.source, k) for k in changes}
        return dataclasses.replace(second, source=dataclasses.replace(second.source, **values))
    return take


def _topic(first: Pipeline, second: Pipeline) -> Pipeline:
    topics = (*second.source.topics, first.source.topics[0])
    return dataclasses.replace(second, source=dataclasses.replace(second.source, topics=topics))


@pytest.mark.parametrize(("kind", "share"), [
    ("replication slot", _source(slot_name=True)),
    ("topic prefix", _source(topic_prefix=True)),
    ("connector name", _source(name=True)),
    ("topic", _topic),
])
def test_each_kind_of_shared_name_is_reported(config: Config, kind: str,
                                              share: Callable[[Pipeline, Pipeline], Pipeline]
                                              ) -> None:
    pipelines = list(build_plan(config).pipelines)
    assert not list(_collisions(pipelines, config))
    i, j = _same_env_pair(pipelines)
    pipelines[j] = share(pipelines[i], pipelines[j])
    problems = list(_collisions(pipelines, config))
    assert [p.message.split(" ")[: len(kind.split())] for p in problems] == [kind.split()]
    assert f"in environment {pipelines[j].environment!r}" in problems[0].message


def test_the_same_names_in_two_environments_do_not_collide(config: Config) -> None:
    pipelines = list(build_plan(config).pipelines)
    envs = sorted({p.environment for p in pipelines})
    assert len(envs) >= 2
    # every pipeline of the second environment renamed into the first one's names
    first = [p for p in pipelines if p.environment == envs[0]]
    copies = [dataclasses.replace(p, environment=envs[1]) for p in first]
    others = [p for p in pipelines if p.environment != envs[1]]
    assert not list(_collisions(others + copies, config))

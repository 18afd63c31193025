"""Names two connectors of one environment must not share, and the collisions.

Two connectors sharing a slot, topic prefix, topic or name lose data silently, as
does a sink subscribed by `topics.regex` to a topic that is not its own. Every
collision is a located problem at the service that comes second.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from cdc_generator import names
from cdc_generator.config.model import Config
from cdc_generator.errors import Problem

if TYPE_CHECKING:  # plan.py calls this module
    from cdc_generator.plan import Pipeline

_KAFKA_ALIKE = "('.' and '_' alike) "

# Every name two connectors of one environment must not share, by kind: the one
# list both the quick test and the search for the colliding pair read. A sink that
# serves several pipelines (sinks: one-per-service) is claimed by the one whose
# files hold it.
_CLAIMS: tuple[tuple[str, Callable[[Pipeline], Iterable[str]]], ...] = (
    ("replication slot", lambda p: (p.source.slot_name,)),
    ("topic prefix", lambda p: (p.source.topic_prefix,)),
    ("connector name", lambda p: (f"{p.namespace}/{p.source.name}",
                                  *((f"{p.namespace}/{p.sink.name}",) if p.renders_sink
                                    else ()))),
    ("topic", lambda p: p.source.topics),
)
# Kafka refuses a topic that equals another once '.' and '_' are the same: the
# topic names above, so told apart (_any_shared tests them in bulk)
_ALIKE = frozenset({"topic prefix", "topic"})
_KAFKA_CLAIMS: tuple[tuple[str, Callable[[Pipeline], Iterable[str]]], ...] = (
    (_KAFKA_ALIKE + "topic prefix", lambda p: (names.kafka_topic_key(p.source.topic_prefix),)),
    (_KAFKA_ALIKE + "topic", lambda p: tuple(names.kafka_topic_key(t) for t in p.source.topics)),
)


def collisions(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    yield from _collisions(pipelines, config)
    yield from _control_topics(pipelines, config)
    yield from _subscribed(pipelines, config)


def _control_of(p: Pipeline) -> tuple[str, ...]:
    """The topics of `p`'s control tables (control.py): never a sink's to read."""
    return tuple(f"{p.source.topic_prefix}.{t}" for t in p.source.control_tables)


def _control_topics(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    """A captured table named like its source's signal or heartbeat table shares its
    topic with that control table: the sink would write control rows into it."""
    tables = {(s.name, t.name): t.origin for s in config.services for t in s.tables}
    for p in pipelines:
        for topic in sorted(set(_control_of(p)) & set(p.source.topics)):
            table = topic.rsplit(".", 1)[1]
            yield tables[p.service, table].problem(
                f"table {table!r} of {_who(p)} has the name of its source's control table "
                f"(topic {topic!r}) in environment {p.environment!r}",
                "rename the table: cdc-generator names the signal and heartbeat tables "
                "<service>_<customer>_<environment>_signal and _heartbeat")


def _collisions(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    if not _any_shared(pipelines):
        return
    origins = {s.name: s.origin for s in config.services}
    seen: dict[tuple[str, str, str], Pipeline] = {}
    for p in pipelines:
        for kind, values in (*_CLAIMS, *_KAFKA_CLAIMS):
            for value in values(p):
                key = (p.environment, kind, value)
                other = seen.setdefault(key, p)
                if other is not p:
                    what = f"{kind} {value!r} of {_who(p, value)}"
                    if kind.startswith(_KAFKA_ALIKE):
                        mine, theirs = _named(kind, value, p), _named(kind, value, other)
                        if mine & theirs:
                            continue  # the very same name: reported as such
                        what = (f"{kind[len(_KAFKA_ALIKE):]} {min(mine)!r} of {_who(p)}, "
                                f"the same to Kafka as {min(theirs)!r},")
                    yield origins[p.service].problem(
                        f"{what} collides with {_who(other)} in environment {p.environment!r}",
                        "two connectors must never share a slot, topic prefix or topic, "
                        "nor topics that differ only in '.' against '_' (Kafka refuses "
                        "those): rename a service, customer or table",
                    )
                    seen[key] = p


def _subscribed(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    """A sink subscribed by topics.regex reads exactly its own topics: none of another
    service's, nor its own sources' control topics (heartbeats, signals)."""
    regexes = {(p.environment, p.sink.name): p for p in pipelines
               if p.sink.topics_regex is not None and p.renders_sink}
    if not regexes:
        return
    origins = {s.name: s.origin for s in config.services}
    for (env, _name), owner in sorted(regexes.items()):
        pattern = re.compile(owner.sink.topics_regex or "")
        own = frozenset(owner.sink.topics)
        for p in pipelines:
            if p.environment != env:
                continue
            for topic in (*p.source.topics, *_control_of(p)):
                if topic not in own and pattern.fullmatch(topic):
                    yield origins[owner.service].problem(
                        f"sink {owner.sink.name!r} of {_who(owner)} (sinks: one-per-service) "
                        f"would also read topic {topic!r} of {_who(p)} in environment {env!r}",
                        "a table named like a control table, or a service named like "
                        "another's tenant: rename the table, service or customer, or keep "
                        "one sink per tenant")


def _named(kind: str, key: str, p: Pipeline) -> set[str]:
    """The names of `p` whose Kafka key is `key`."""
    names_ = (p.source.topic_prefix,) if kind.endswith("prefix") else p.source.topics
    return {n for n in names_ if names.kafka_topic_key(n) == key}


def _any_shared(pipelines: list[Pipeline]) -> bool:
    """Whether any two pipelines of one environment share a name of one kind: the
    quick test, in bulk set operations, before `_collisions` looks for which."""
    by_env: dict[str, list[Pipeline]] = defaultdict(list)
    for p in pipelines:
        by_env[p.environment].append(p)
    for ps in by_env.values():
        for kind, values in _CLAIMS:
            names_ = [v for p in ps for v in values(p)]
            unique = set(names_)
            if len(unique) != len(names_):
                return True
            if kind in _ALIKE and len({n.replace(".", "_") for n in unique}) != len(unique):
                return True
    return False


def _who(p: Pipeline, name: str = "") -> str:
    """The pipeline, or the service when `name` is its sink for all tenants."""
    customer = p.sink.customer if name.endswith(f"/{p.sink.name}") else p.customer
    return f"service {p.service!r}" + (f" customer {customer!r}" if customer else "")

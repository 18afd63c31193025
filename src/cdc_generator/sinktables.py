"""Sink tables that two pipelines would both write, across every pipeline of the plan.

The JDBC sink writes each topic to `<schema>.<table>` of its sink database: the
source schema and table for a db-shared service, `<customer>.<table>` for a
db-per-tenant one. Two pipelines writing one table overwrite each other's rows,
so a target is claimed once per sink database, names compared regardless of
case (the sink does not quote them, so PostgreSQL folds them).

A sink database is its host setting plus its database name. A host with a
`${VAR}` placeholder is resolved by each environment's own Connect workers, so
it names a server per environment; a literal host names the same server in
every environment, whose pipelines then share its databases.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

from cdc_generator import names
from cdc_generator.config.model import Config, GroupType, Origin
from cdc_generator.config.providers import PLACEHOLDER
from cdc_generator.errors import Problem

if TYPE_CHECKING:  # plan.py calls this module
    from cdc_generator.plan import Pipeline

SinkDatabase = tuple[str, ...]  # (environment if the host is a placeholder, host, database)
_sql_ident = cache(names.sql_ident)  # the same few service and customer names, many times


def collisions(pipelines: list[Pipeline], config: Config) -> list[Problem]:
    return list(_collisions(pipelines, config))


def _collisions(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    envs = {e.name: e for e in config.environments}
    # sink database -> target schema -> the pipelines writing there, with their tables
    writers: dict[tuple[SinkDatabase, str], list[tuple[Pipeline, frozenset[str]]]] = (
        defaultdict(list))
    tables_of: dict[tuple[int, str | None], dict[str, frozenset[str]]] = {}
    for p in pipelines:
        env = envs.get(p.environment)
        if env is None:
            continue
        host = env.sink.host.value
        database = env.sink.database.value if env.sink.database else _sql_ident(p.service)
        where: SinkDatabase = ((p.environment,) if PLACEHOLDER.search(host) else ()) + (
            host, database)
        key = (id(p.source.tables), p.customer)
        targets = tables_of.get(key)
        if targets is None:
            targets = tables_of[key] = _targets(p)
        for schema, tables in targets.items():
            writers[where, schema].append((p, tables))
    reported: set[tuple[str, ...]] = set()
    origins = _origins(config)
    for (where, schema), claims in writers.items():
        if len(claims) < 2:
            continue
        for i, (p, tables) in enumerate(claims):
            for other, other_tables in claims[:i]:
                for table in sorted(tables & other_tables):
                    pair = tuple(sorted({_who(p), _who(other)}))
                    once = (*pair, *where[-2:], schema, table)
                    if once in reported:
                        continue
                    reported.add(once)
                    yield _origin(origins, p, table).problem(
                        f"sink table {schema}.{table} in database {where[-1]!r} would be "
                        f"written by {_who(p)} and by {_who(other)}{_envs(p, other, where)}",
                        "two pipelines writing one table overwrite each other's rows: give "
                        "one its own sink database (environments.<env>.sink.database), or "
                        "rename a table or customer")


def _targets(p: Pipeline) -> dict[str, frozenset[str]]:
    """Target schema -> table names (lower case) that `p` writes."""
    if p.group_type is GroupType.DB_PER_TENANT and p.customer is not None:
        return {_sql_ident(p.customer): frozenset(t.name.lower() for t in p.source.tables)}
    out: dict[str, set[str]] = defaultdict(set)
    for table in p.source.tables:
        out[table.schema.lower()].add(table.name.lower())
    return {schema: frozenset(tables) for schema, tables in out.items()}


def _who(p: Pipeline) -> str:
    return f"service {p.service!r}" + (f" customer {p.customer!r}" if p.customer else "")


def _envs(p: Pipeline, other: Pipeline, where: SinkDatabase) -> str:
    if p.environment == other.environment:
        return f" in environment {p.environment!r}"
    return (f" (environments {other.environment!r} and {p.environment!r} name the same "
            f"sink host {where[-2]!r})")


def _origins(config: Config) -> dict[tuple[str, str], Origin]:
    out: dict[tuple[str, str], Origin] = {}
    for service in config.services:
        out.setdefault((service.name, ""), service.origin)
        for table in service.tables:
            out.setdefault((service.name, table.name.lower()), table.origin)
    return out


def _origin(origins: dict[tuple[str, str], Origin], p: Pipeline, table: str) -> Origin:
    return origins.get((p.service, table)) or origins[p.service, ""]

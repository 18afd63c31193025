"""Pure expansion of the model: groups x environments x tenants -> pipeline specs.

Every name that must be unique (connector, slot, publication, topic prefix,
topic) is decided here, and collisions are reported here, so templates only
lay out values they are given.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cache

from cdc_generator import claims, control, layout, names, rowfilter, sinkspec, sinktables
from cdc_generator.config.model import (
    Config,
    Database,
    Environment,
    GroupType,
    ServerGroup,
    Service,
    Table,
    TopicSettings,
)
from cdc_generator.config.providers import connect_refs
from cdc_generator.config.sink_mode import one_sink
from cdc_generator.config.tls import Tls
from cdc_generator.errors import ConfigError, Problem
from cdc_generator.sinkspec import ROUTER_KEY_FIELD, Captured, SinkSpec

__all__ = ["CapturedTable", "Pipeline", "Plan", "SinkSpec", "SourceSpec", "build_plan"]
#: Debezium's topic.heartbeat.prefix (default): heartbeats go to <it>.<topic.prefix>
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"

# Pure name functions called for every table of every pipeline: memoised, as
# thousands of tenants repeat the same few table names.
_regex_literal = cache(names.java_regex_literal)
_k8s = cache(names.k8s)


@dataclass(frozen=True, slots=True)
class CapturedTable:
    schema: str
    name: str
    primary_key: tuple[str, ...]
    filter: str | None  # canonical SQL boolean expression
    topic: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True, slots=True)
class SourceSpec:
    name: str
    database: str
    hostname: str
    port: str
    user: str
    password: str
    slot_name: str
    publication_name: str
    publication_autocreate_mode: str
    topic_prefix: str
    tables: tuple[CapturedTable, ...]
    table_include_list: str
    message_key_columns: str  # the configured primary keys, as Debezium wants them
    topics: tuple[str, ...]  # sorted
    filtered_tables: tuple[CapturedTable, ...]
    route_regex: str
    route_replacement: str
    key_uniqueness: bool  # several schemas feed one topic: the key carries the schema
    key_field_name: str
    heartbeat_interval_ms: int
    heartbeat_action_query: str  # writes the heartbeat table (control.py)
    signal_data_collection: str  # the signal table (control.py)
    #: topics of control traffic only: Debezium's heartbeats, control tables (kept a day)
    control_topics: str
    control_tables: tuple[str, ...]  # their names in the control schema (control.py)
    snapshot_mode: str
    topic_settings: TopicSettings
    tls: Tls | None = None  # TLS to the source database (server.tls)


@dataclass(frozen=True, slots=True)
class _TableSet:
    """A database's captured tables and the SourceSpec fields made of them: the
    same in every environment, so worked out once per database."""

    tables: tuple[CapturedTable, ...]
    table_include_list: str
    message_key_columns: str
    topics: tuple[str, ...]
    filtered_tables: tuple[CapturedTable, ...]
    key_uniqueness: bool
    for_sink: Captured

    @classmethod
    def of(cls, tables: tuple[CapturedTable, ...]) -> _TableSet:
        feeds: dict[str, set[str]] = defaultdict(set)
        for t in tables:
            feeds[t.topic].add(t.schema)
        topics = tuple(sorted(feeds))
        key_uniqueness = any(len(schemas) > 1 for schemas in feeds.values())
        return cls(
            tables=tables,
            table_include_list=",".join(_regex_literal(t.qualified) for t in tables),
            message_key_columns=";".join(
                f"{_regex_literal(t.qualified)}:{','.join(t.primary_key)}" for t in tables),
            topics=topics,
            filtered_tables=tuple(t for t in tables if t.filter),
            key_uniqueness=key_uniqueness,
            for_sink=Captured(topics=topics,
                              schemas=tuple(sorted({t.schema for t in tables})),
                              table_names=tuple(sorted({t.name for t in tables})),
                              key_uniqueness=key_uniqueness),
        )


@dataclass(frozen=True, slots=True)
class Pipeline:
    """One source + sink pair: a db-shared service, or one tenant database."""

    service: str
    environment: str
    customer: str | None
    namespace: str
    connect_cluster: str
    group: str
    group_type: GroupType
    isolation: str
    source: SourceSpec
    sink: SinkSpec
    service_file: str
    #: Strimzi KafkaConnector spec.state of both connectors: running, paused, stopped
    state: str = "running"

    @property
    def directory(self) -> str:
        return layout.pipelines_dir(self.service, self.environment)

    @property
    def renders_sink(self) -> bool:
        """Whether this pipeline's files hold its sink (one sink may serve several)."""
        return self.sink.owner == self.customer


@dataclass(frozen=True, slots=True)
class Plan:
    pipelines: tuple[Pipeline, ...]
    groups_file: str


def build_plan(config: Config, *, service: str | None = None,
               environment: str | None = None) -> Plan:
    """Expand the whole config (collisions are checked across all of it), then
    keep the pipelines of the requested service/environment."""
    pipelines = _expand(config, rowfilter.TenantFilters())
    problems = collisions(pipelines, config)
    if problems:
        raise ConfigError(problems)
    chosen = tuple(
        p for p in pipelines
        if (service is None or p.service == service)
        and (environment is None or p.environment == environment)
    )
    return Plan(chosen, config.groups_file)


def check(config: Config) -> list[Problem]:
    """The collisions of a config that has other problems too (so one run reports
    them all): filters, which may be invalid, are left as written."""
    return collisions(_expand(config, None), config)


def collisions(pipelines: list[Pipeline], config: Config) -> list[Problem]:
    return [*claims.collisions(pipelines, config), *sinktables.collisions(pipelines, config)]


def _expand(config: Config, filters: rowfilter.TenantFilters | None) -> list[Pipeline]:
    pipelines: list[Pipeline] = []
    for svc in config.services:
        group = config.group(svc.server_group)
        if group is None:
            continue
        dbs = _databases_of(group, svc)
        # a database's captured tables are the same in every environment
        captured = [_TableSet.of(_captured_tables(svc, group, db, filters)) for db in dbs]
        for env in config.environments:
            # sinks: one-per-service: every tenant database's pipeline has the one sink
            shared = (sinkspec.one_for_all(svc, env, [d.customer or "" for d in dbs],
                                           [t.for_sink for t in captured])
                      if one_sink(svc, group) and dbs else None)
            pipelines.extend(
                _pipeline(config, svc, group, env, db, tables=tables, sink=shared)
                for db, tables in zip(dbs, captured, strict=True))
    return pipelines


def _databases_of(group: ServerGroup, service: Service) -> list[Database]:
    dbs = group.databases_of(service.name)
    return dbs[:1] if group.type is GroupType.DB_SHARED else dbs


def _captured_tables(service: Service, group: ServerGroup, db: Database,
                     filters: rowfilter.TenantFilters | None) -> tuple[CapturedTable, ...]:
    customer = db.customer if group.type is GroupType.DB_PER_TENANT else None
    prefix = names.topic_prefix(service.name, customer)
    return tuple(
        CapturedTable(
            schema=schema,
            name=table.name,
            primary_key=table.primary_key,
            filter=_filter(table, customer, filters),
            topic=f"{prefix}.{table.name}",
        )
        for table in service.tables
        for schema in table.schemas_in(db)
    )


def _pipeline(config: Config, service: Service, group: ServerGroup, env: Environment,
              db: Database, *, tables: _TableSet, sink: SinkSpec | None) -> Pipeline:
    customer = db.customer if group.type is GroupType.DB_PER_TENANT else None
    prefix = names.topic_prefix(service.name, customer)
    slot = names.slot_name(service.name, customer, env.name)
    ctl = control.Control.of(slot)
    base = _k8s(service.name, *([customer] if customer else []))
    escaped = _regex_literal(prefix)
    ref = connect_refs(env.secrets, env.namespace)
    source = SourceSpec(
        name=f"source-{base}",
        database=db.name_in(env.name),
        hostname=ref(names.url_host(group.server.host.value)),
        port=ref(group.server.port.value),
        user=ref(group.server.user.value),
        password=ref(group.server.password.value),
        tls=group.server.tls,
        slot_name=slot,
        publication_name=slot,
        # cdc-generator apply (or the generated source SQL) owns the publication: the
        # connector needs no table ownership, and a table added to the config joins the
        # publication only together with its backfill (changes.py)
        publication_autocreate_mode="disabled",
        topic_prefix=prefix,
        tables=tables.tables,
        table_include_list=(f"{tables.table_include_list},{_regex_literal(ctl.signal_qualified)},"
                            f"{_regex_literal(ctl.heartbeat_qualified)}"),
        message_key_columns=tables.message_key_columns,
        topics=tables.topics,
        filtered_tables=tables.filtered_tables,
        route_regex=f"{escaped}\\.([^.]+)\\.([^.]+)",
        route_replacement=f"{prefix}.$2",
        key_uniqueness=tables.key_uniqueness,
        key_field_name=ROUTER_KEY_FIELD,
        heartbeat_interval_ms=env.heartbeat_interval_ms,
        heartbeat_action_query=ctl.heartbeat_query(),
        signal_data_collection=ctl.signal_qualified,
        control_topics=",".join((f"{_regex_literal(HEARTBEAT_TOPIC_PREFIX)}\\.{escaped}",
                                 *(f"{escaped}\\.{_regex_literal(t)}" for t in ctl.tables))),
        control_tables=ctl.tables,
        snapshot_mode=env.snapshot_mode,
        topic_settings=env.topics,
    )
    sink = sink or sinkspec.per_pipeline(service, env, customer, base, tables.for_sink)
    return Pipeline(
        service=service.name,
        environment=env.name,
        customer=customer,
        namespace=env.namespace,
        connect_cluster=env.connect_cluster,
        group=group.name,
        group_type=group.type,
        isolation=group.isolation.value,
        source=source,
        sink=sink,
        service_file=service.file,
        state=service.state_in(env.name),
    )


def _filter(table: Table, customer: str | None,
            filters: rowfilter.TenantFilters | None) -> str | None:
    if table.filter is None:
        return None
    if filters is None:
        return table.filter
    return filters.canonical(table.filter, customer)

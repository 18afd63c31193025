"""Pure expansion of the model: groups x environments x tenants -> pipeline specs.

Every name that must be unique (connector, slot, publication, topic prefix,
topic) is decided here, and collisions are reported here, so templates only
lay out values they are given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache

from cdc_generator import control, layout, names, rowfilter, sinktables
from cdc_generator.config.model import (
    Config,
    Database,
    Environment,
    GroupType,
    Origin,
    ServerGroup,
    Service,
    Table,
    TopicSettings,
)
from cdc_generator.config.providers import connect_refs
from cdc_generator.config.tls import Tls
from cdc_generator.errors import ConfigError, Problem

ROUTER_KEY_FIELD = "__dbz__physicalTableIdentifier"
#: Debezium's topic.heartbeat.prefix (default): heartbeats go to <it>.<topic.prefix>
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat"

# Pure name functions called for every table of every pipeline: memoised, as
# thousands of tenants repeat the same few table names.
_regex_literal = cache(names.java_regex_literal)
_k8s = cache(names.k8s)
_sql_ident = cache(names.sql_ident)


@dataclass(frozen=True)
class CapturedTable:
    schema: str
    name: str
    primary_key: tuple[str, ...]
    filter: str | None  # canonical SQL boolean expression
    topic: str

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
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
    snapshot_mode: str
    topic_settings: TopicSettings
    tls: Tls | None = None  # TLS to the source database (server.tls)


@dataclass(frozen=True)
class _TableSet:
    """A database's captured tables and the SourceSpec fields made of them: the
    same in every environment, so worked out once per database."""

    tables: tuple[CapturedTable, ...]
    table_include_list: str
    message_key_columns: str
    topics: tuple[str, ...]
    filtered_tables: tuple[CapturedTable, ...]
    key_uniqueness: bool

    @classmethod
    def of(cls, tables: tuple[CapturedTable, ...]) -> _TableSet:
        feeds: dict[str, set[str]] = defaultdict(set)
        for t in tables:
            feeds[t.topic].add(t.schema)
        return cls(
            tables=tables,
            table_include_list=",".join(_regex_literal(t.qualified) for t in tables),
            message_key_columns=";".join(
                f"{_regex_literal(t.qualified)}:{','.join(t.primary_key)}" for t in tables),
            topics=tuple(sorted(feeds)),
            filtered_tables=tuple(t for t in tables if t.filter),
            key_uniqueness=any(len(schemas) > 1 for schemas in feeds.values()),
        )


@dataclass(frozen=True)
class SinkSpec:
    name: str
    database: str  # the sink database, as configured (may be a ${env:VAR} reference)
    target_schemas: tuple[str, ...]  # the schemas it writes into, sorted
    connection_url: str
    user: str
    password: str
    topics: tuple[str, ...]
    collection_name_format: str
    drop_key_field: str | None
    tasks_max: int
    batch_size: int = 4096
    pool_size: int = 2
    #: where records the sink cannot convert or transform go (None: it stops at them)
    dead_letter_topic: str | None = None


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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
    return [*_collisions(pipelines, config), *sinktables.collisions(pipelines, config)]


def _expand(config: Config, filters: rowfilter.TenantFilters | None) -> list[Pipeline]:
    pipelines: list[Pipeline] = []
    for svc in config.services:
        group = config.group(svc.server_group)
        if group is None:
            continue
        dbs = _databases_of(group, svc)
        # a database's captured tables are the same in every environment
        captured = [_TableSet.of(_captured_tables(svc, group, db, filters)) for db in dbs]
        pipelines.extend(
            _pipeline(config, svc, group, env, db, tables=tables)
            for env in config.environments
            for db, tables in zip(dbs, captured, strict=True)
        )
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
              db: Database, *, tables: _TableSet) -> Pipeline:
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
        snapshot_mode=env.snapshot_mode,
        topic_settings=env.topics,
    )
    sink = _sink(service, env, customer, base, tables)
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


#: dead-letter topics: cdc-dlq.<sink connector name>, apart from every CDC topic (cdc.)
DEAD_LETTER_PREFIX = "cdc-dlq"


def _sink(service: Service, env: Environment, customer: str | None, base: str,
          tables: _TableSet) -> SinkSpec:
    ref = connect_refs(env.secrets, env.namespace)
    sink_db = env.sink.database.value if env.sink.database else _sql_ident(service.name)
    target_schema = _sql_ident(customer) if customer is not None else "${source.schema}"
    target_schemas = ((target_schema,) if customer is not None
                      else tuple(sorted({t.schema for t in tables.tables})))
    return SinkSpec(
        name=f"sink-{base}",
        database=ref(sink_db),
        target_schemas=target_schemas,
        connection_url=(f"jdbc:postgresql://{ref(names.url_host(env.sink.host.value))}:"
                        f"{ref(env.sink.port.value)}/{ref(sink_db)}"
                        + (env.sink.tls.url_parameters() if env.sink.tls else "")),
        user=ref(env.sink.user.value),
        password=ref(env.sink.password.value),
        topics=tables.topics,
        collection_name_format=f"{target_schema}.${{source.table}}",
        drop_key_field=ROUTER_KEY_FIELD if tables.key_uniqueness else None,
        tasks_max=env.sink_tasks_max,
        batch_size=env.sink_batch_size,
        pool_size=env.sink_connection_pool_size,
        dead_letter_topic=(f"{DEAD_LETTER_PREFIX}.sink-{base}" if env.sink.dead_letter_queue
                           else None),
    )


def _filter(table: Table, customer: str | None,
            filters: rowfilter.TenantFilters | None) -> str | None:
    if table.filter is None:
        return None
    if filters is None:
        return table.filter
    return filters.canonical(table.filter, customer)


_KAFKA_ALIKE = "('.' and '_' alike) "

# Every name two connectors of one environment must not share, by kind: the one
# list both the quick test and the search for the colliding pair read.
_CLAIMS: tuple[tuple[str, Callable[[Pipeline], Iterable[str]]], ...] = (
    ("replication slot", lambda p: (p.source.slot_name,)),
    ("topic prefix", lambda p: (p.source.topic_prefix,)),
    ("connector name", lambda p: (f"{p.namespace}/{p.source.name}",)),
    ("topic", lambda p: p.sink.topics),  # = p.source.topics, sorted
)
# Kafka refuses a topic that equals another once '.' and '_' are the same: the
# topic names above, so told apart (_any_shared tests them in bulk)
_ALIKE = frozenset({"topic prefix", "topic"})
_KAFKA_CLAIMS: tuple[tuple[str, Callable[[Pipeline], Iterable[str]]], ...] = (
    (_KAFKA_ALIKE + "topic prefix", lambda p: (names.kafka_topic_key(p.source.topic_prefix),)),
    (_KAFKA_ALIKE + "topic", lambda p: tuple(names.kafka_topic_key(t) for t in p.sink.topics)),
)


def _collisions(pipelines: list[Pipeline], config: Config) -> Iterator[Problem]:
    """Two connectors sharing a slot, topic prefix, topic or name lose data silently."""
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
                    what = f"{kind} {value!r} of {_who(p)}"
                    if kind.startswith(_KAFKA_ALIKE):
                        mine, theirs = _named(kind, value, p), _named(kind, value, other)
                        if mine & theirs:
                            continue  # the very same name: reported as such
                        what = (f"{kind[len(_KAFKA_ALIKE):]} {min(mine)!r} of {_who(p)}, "
                                f"the same to Kafka as {min(theirs)!r},")
                    yield _origin(origins, p).problem(
                        f"{what} collides with {_who(other)} in environment {p.environment!r}",
                        "two connectors must never share a slot, topic prefix or topic, "
                        "nor topics that differ only in '.' against '_' (Kafka refuses "
                        "those): rename a service, customer or table",
                    )
                    seen[key] = p


def _named(kind: str, key: str, p: Pipeline) -> set[str]:
    """The names of `p` whose Kafka key is `key`."""
    names_ = (p.source.topic_prefix,) if kind.endswith("prefix") else p.sink.topics
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


def _who(p: Pipeline) -> str:
    return f"service {p.service!r}" + (f" customer {p.customer!r}" if p.customer else "")


def _origin(origins: dict[str, Origin], p: Pipeline) -> Origin:
    return origins[p.service]

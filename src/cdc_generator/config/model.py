"""Typed, frozen view of the configuration, built once from schema-valid data.

Nothing past this module indexes raw YAML dictionaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from cdc_generator.config.load import Document, KeyPath, format_key_path
from cdc_generator.config.providers import PLACEHOLDER, Secrets, env_var_name
from cdc_generator.config.tls import Tls
from cdc_generator.errors import Problem

DEFAULT_ENVIRONMENTS, DEFAULT_SCHEMA = ("nonprod", "prod"), "public"


@dataclass(frozen=True)
class Origin:
    """Where a model object came from, so later checks can point at the line."""

    file: str
    line: int
    col: int
    key_path: str

    @classmethod
    def of(cls, doc: Document, path: KeyPath) -> Origin:
        line, col = doc.position(path)
        return cls(doc.path, line, col, format_key_path(path))

    def problem(self, message: str, hint: str = "") -> Problem:
        return Problem(self.file, self.line, self.col, self.key_path, message, hint)


# (key, where it is) for keys whose values other files refer to or must agree with
KeyOrigins = tuple[tuple[str, Origin], ...]


def _key_origins(doc: Document, path: KeyPath, origin: Origin, raw: dict[str, Any],
                 keys: tuple[str, ...]) -> KeyOrigins:
    marks, prefix = doc.marks, f"{origin.key_path}." if origin.key_path else ""
    return tuple(
        (key, Origin(origin.file, *marks.get((*path, key), (origin.line, origin.col)),
                     prefix + key))
        for key in keys if key in raw)


def _at(origin: Origin, keys: KeyOrigins, key: str) -> Origin:
    return next((o for k, o in keys if k == key), origin)


class GroupType(StrEnum):
    DB_SHARED = "db-shared"
    DB_PER_TENANT = "db-per-tenant"


class Isolation(StrEnum):
    COLUMN = "column"
    SCHEMA = "schema"
    RLS = "rls"


@dataclass(frozen=True)
class Setting:
    """A config value: a literal, or text with `${VAR}` placeholders."""

    value: str
    origin: Origin

    @property
    def is_placeholder(self) -> bool:
        return PLACEHOLDER.fullmatch(self.value) is not None


@dataclass(frozen=True)
class Sink:
    host: Setting
    port: Setting
    database: Setting | None  # None: the service name
    user: Setting
    password: Setting
    dead_letter_queue: bool = False  # unreadable records go to a dead-letter topic
    tls: Tls | None = None


@dataclass(frozen=True)
class TopicSettings:
    """What the source connectors create their topics with (topic.creation.default.*)."""

    replication_factor: int
    min_insync_replicas: int
    retention_ms: int  # -1: kept until deleted by hand
    origin: Origin

    @classmethod
    def default_min_insync(cls, replication_factor: int) -> int:
        """2 of 3 (or more) replicas, so one broker may be down; 1 below that."""
        return 2 if replication_factor >= 3 else 1


@dataclass(frozen=True)
class Environment:
    name: str
    namespace: str
    connect_cluster: str
    sink_tasks_max: int
    sink_batch_size: int
    sink_connection_pool_size: int
    heartbeat_interval_ms: int
    snapshot_mode: str
    topics: TopicSettings
    sink: Sink
    origin: Origin
    secrets: Secrets = field(default_factory=Secrets)


@dataclass(frozen=True)
class Server:
    host: Setting
    port: Setting
    user: Setting
    password: Setting
    tls: Tls | None = None


@dataclass(frozen=True)
class Database:
    name: str
    service: str | None
    customer: str | None
    schemas: tuple[str, ...]
    name_by_environment: tuple[tuple[str, str], ...]
    origin: Origin
    keys: KeyOrigins = ()

    def at(self, key: str) -> Origin:
        """Where `key` (e.g. "customer", "name_by_environment.prod") is, else the database."""
        return _at(self.origin, self.keys, key)

    def name_in(self, environment: str) -> str:
        return dict(self.name_by_environment).get(environment, self.name)

    @property
    def schemas_or_default(self) -> tuple[str, ...]:
        """Where a table without a schema lives: the listed schemas, else `public`."""
        return self.schemas or (DEFAULT_SCHEMA,)

    def schemas_for(self, schema: str | None) -> tuple[str, ...]:
        """Where a table named with `schema` (None: none named) is looked for."""
        return (schema,) if schema else self.schemas_or_default


@dataclass(frozen=True)
class ServerGroup:
    name: str
    type: GroupType
    service: str | None
    isolation: Isolation
    tenant_column: str
    server: Server
    databases: tuple[Database, ...]
    origin: Origin
    keys: KeyOrigins = ()

    def at(self, key: str) -> Origin:
        return _at(self.origin, self.keys, key)

    def service_of(self, database: Database) -> str | None:
        return database.service or self.service

    def databases_of(self, service: str) -> list[Database]:
        """The group's databases that belong to `service`."""
        return [db for db in self.databases if self.service_of(db) == service]


@dataclass(frozen=True)
class Table:
    schema: str | None  # None: every schema of the database
    name: str
    primary_key: tuple[str, ...]
    filter: str | None
    origin: Origin
    keys: KeyOrigins = ()

    def at(self, key: str) -> Origin:
        return _at(self.origin, self.keys, key)

    def schemas_in(self, database: Database) -> tuple[str, ...]:
        """The schemas this entry captures from in `database`."""
        return database.schemas_for(self.schema)


@dataclass(frozen=True)
class Service:
    name: str
    server_group: str
    tables: tuple[Table, ...]
    file: str
    origin: Origin
    keys: KeyOrigins = ()
    state: str = "running"  # the connectors' state where `states` names none
    states: tuple[tuple[str, str], ...] = ()  # (environment, state)
    sinks: str | None = None  # one-per-tenant, one-per-service; None: as the group's type

    def state_in(self, environment: str) -> str:
        return dict(self.states).get(environment, self.state)

    def at(self, key: str) -> Origin:
        """Where `key` ("service", "server_group") is, else the file's top."""
        return _at(self.origin, self.keys, key)


@dataclass(frozen=True)
class Config:
    environments: tuple[Environment, ...]
    server_groups: tuple[ServerGroup, ...]
    services: tuple[Service, ...]
    groups_file: str
    group_by_name: dict[str, ServerGroup] = field(hash=False, compare=False, repr=False)

    def group(self, name: str) -> ServerGroup | None:
        return self.group_by_name.get(name)


# ---------------------------------------------------------------- builders


def _setting(doc: Document, raw: dict[str, Any], path: KeyPath, key: str, default: str) -> Setting:
    value = raw.get(key)
    text = default if value is None else str(value)
    return Setting(text, Origin.of(doc, (*path, key)))


def build_environments(doc: Document, skip: frozenset[str] = frozenset()
                       ) -> tuple[Environment, ...]:
    """The environments of schema-valid data (`skip`: names of invalid ones)."""
    raw_envs = doc.data.get("environments")
    if raw_envs is None:
        raw_envs = {name: {} for name in DEFAULT_ENVIRONMENTS}
    out = []
    for name, maybe_raw in raw_envs.items():
        if name in skip:
            continue
        raw = maybe_raw or {}
        path: KeyPath = ("environments", name)
        sink_raw = raw.get("sink") or {}
        sink_path = (*path, "sink")
        database = sink_raw.get("database")
        sink = Sink(
            host=_setting(doc, sink_raw, sink_path, "host", "${POSTGRES_SINK_HOST}"),
            port=_setting(doc, sink_raw, sink_path, "port", "${POSTGRES_SINK_PORT}"),
            database=(None if database is None
                      else _setting(doc, sink_raw, sink_path, "database", "")),
            user=_setting(doc, sink_raw, sink_path, "user", "${POSTGRES_USER}"),
            password=_setting(doc, sink_raw, sink_path, "password", "${POSTGRES_PASSWORD}"),
            dead_letter_queue=bool(sink_raw.get("dead_letter_queue", False)),
            tls=Tls.of(sink_raw.get("tls")),
        )
        topics_raw = raw.get("topics") or {}
        replicas = int(topics_raw.get("replication_factor", 3))
        topics = TopicSettings(
            replication_factor=replicas,
            min_insync_replicas=int(topics_raw.get(
                "min_insync_replicas", TopicSettings.default_min_insync(replicas))),
            retention_ms=int(topics_raw.get("retention_ms", -1)),
            # where a check of the two counts points: the key that sets the minimum
            origin=Origin.of(doc, _topics_key_path(path, topics_raw) if topics_raw else path),
        )
        out.append(
            Environment(
                name=name,
                namespace=raw.get("namespace", "kafka"),
                connect_cluster=raw.get("connect_cluster", "cdc-connect"),
                sink_tasks_max=int(raw.get("sink_tasks_max", 1)),
                sink_batch_size=int(raw.get("sink_batch_size", 4096)),
                sink_connection_pool_size=int(raw.get("sink_connection_pool_size", 2)),
                heartbeat_interval_ms=int(raw.get("heartbeat_interval_ms", 10000)),
                snapshot_mode=raw.get("snapshot_mode", "initial"),
                topics=topics,
                sink=sink,
                origin=Origin.of(doc, path),
                secrets=Secrets(**{k: str(v) for k, v in (raw.get("secrets") or {}).items()}),
            )
        )
    return tuple(out)


def _topics_key_path(env_path: KeyPath, raw: dict[str, Any]) -> KeyPath:
    for key in ("min_insync_replicas", "replication_factor"):
        if key in raw:
            return (*env_path, "topics", key)
    return (*env_path, "topics")


def build_server_groups(doc: Document, skip: frozenset[int] = frozenset()
                        ) -> tuple[ServerGroup, ...]:
    """The server groups of schema-valid data (`skip`: indexes of invalid ones)."""
    groups = []
    for gi, raw in enumerate(doc.data["server_groups"]):
        if gi in skip:
            continue
        path: KeyPath = ("server_groups", gi)
        server_raw = raw["server"]
        server_path = (*path, "server")
        name = str(raw["name"])
        server = Server(
            host=_setting(doc, server_raw, server_path, "host", ""),
            port=_setting(doc, server_raw, server_path, "port",
                          f"${{{env_var_name('POSTGRES', name, 'PORT')}}}"),
            user=_setting(doc, server_raw, server_path, "user",
                          f"${{{env_var_name('POSTGRES', name, 'USER')}}}"),
            password=_setting(doc, server_raw, server_path, "password",
                              f"${{{env_var_name('POSTGRES', name, 'PASSWORD')}}}"),
            tls=Tls.of(server_raw.get("tls")),
        )
        databases = [_database(doc, (*path, "databases", di), db)
                     for di, db in enumerate(raw["databases"])]
        origin = Origin.of(doc, path)
        groups.append(
            ServerGroup(
                name=name,
                type=GroupType(raw["server_group_type"]),
                service=raw.get("service"),
                isolation=Isolation(raw.get("isolation", "column")),
                tenant_column=raw.get("tenant_column", "customer_id"),
                server=server,
                databases=tuple(databases),
                origin=origin,
                keys=_key_origins(doc, path, origin, raw, ("name", "service", "isolation")),
            )
        )
    return tuple(groups)


def _database(doc: Document, path: KeyPath, db: dict[str, Any]) -> Database:
    origin = Origin.of(doc, path)
    by_environment = db.get("name_by_environment") or {}
    keys = _key_origins(doc, path, origin, db, ("service", "customer", "schemas"))
    if by_environment:
        env_path = (*path, "name_by_environment")
        env_origin = Origin.of(doc, env_path)
        keys += tuple((f"name_by_environment.{env}", o) for env, o in _key_origins(
            doc, env_path, env_origin, by_environment, tuple(by_environment)))
    return Database(
        name=str(db["name"]),
        service=db.get("service"),
        customer=None if db.get("customer") is None else str(db["customer"]),
        schemas=tuple(db.get("schemas") or ()),
        name_by_environment=tuple(sorted(by_environment.items())),
        origin=origin,
        keys=keys,
    )


def build_service(doc: Document, skip: frozenset[int] = frozenset()) -> Service:
    """The service of schema-valid data (`skip`: indexes of invalid table entries)."""
    raw = doc.data
    tables = []
    for ti, t in enumerate(raw["source"]["tables"]):
        if ti in skip:
            continue
        pk = t.get("primary_key")
        primary_key = () if pk is None else ((pk,) if isinstance(pk, str) else tuple(pk))
        path: KeyPath = ("source", "tables", ti)
        origin = Origin.of(doc, path)
        tables.append(
            Table(
                schema=t.get("schema"),
                name=t["name"],
                primary_key=primary_key,
                filter=t.get("filter"),
                origin=origin,
                keys=_key_origins(doc, path, origin, t, ("schema", "filter")),
            )
        )
    origin = Origin.of(doc, ())
    keys = _key_origins(doc, (), origin, raw, ("service", "server_group", "state", "sinks"))
    state = raw.get("state", "running")
    states: dict[str, str] = {}
    if isinstance(state, dict):
        states, state = {str(k): str(v) for k, v in state.items()}, "running"
        state_origin = Origin.of(doc, ("state",))
        keys += tuple((f"state.{env}", o) for env, o in _key_origins(
            doc, ("state",), state_origin, states, tuple(states)))
    return Service(
        name=str(raw["service"]),
        server_group=str(raw["server_group"]),
        tables=tuple(tables),
        file=doc.path,
        origin=origin,
        keys=keys,
        state=str(state),
        states=tuple(sorted(states.items())),
        sinks=raw.get("sinks"),
    )

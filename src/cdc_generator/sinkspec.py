"""The sink connector of a pipeline: one per pipeline (a db-shared service, or one
tenant database), or one for all tenant databases of a service (`sinks:
one-per-service`, config/sink_mode.py)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from cdc_generator import names
from cdc_generator.config.model import Environment, Service
from cdc_generator.config.providers import connect_refs

ROUTER_KEY_FIELD = "__dbz__physicalTableIdentifier"
#: dead-letter topics: cdc-dlq.<sink connector name>, apart from every CDC topic (cdc.)
DEAD_LETTER_PREFIX = "cdc-dlq"

_regex_literal = cache(names.java_regex_literal)
_sql_ident = cache(names.sql_ident)


@dataclass(frozen=True, slots=True)
class SinkSpec:
    name: str
    database: str  # the sink database, as configured (may be a ${env:VAR} reference)
    target_schemas: tuple[str, ...]  # the schemas it writes into, sorted
    connection_url: str
    user: str
    password: str
    topics: tuple[str, ...]  # every topic it reads, sorted
    collection_name_format: str
    drop_key_field: str | None
    tasks_max: int
    batch_size: int = 4096
    pool_size: int = 2
    #: where records the sink cannot convert or transform go (None: it stops at them)
    dead_letter_topic: str | None = None
    #: the tenant it writes for (None: every tenant of the service)
    customer: str | None = None
    #: the pipeline whose files hold it: its customer (None: a db-shared service)
    owner: str | None = None
    #: one sink for all tenants: the topics it subscribes to (instead of `topics`), and
    #: the RegexRouter that turns cdc.<service>.<customer>.<table> into <customer> ($1)
    topics_regex: str | None = None
    tenant_route_regex: str | None = None
    tenant_route_replacement: str = "$1"


@dataclass(frozen=True, slots=True)
class Captured:
    """What a sink needs to know of one source's captured tables."""

    topics: tuple[str, ...]
    schemas: tuple[str, ...]  # the source schemas, sorted
    table_names: tuple[str, ...]
    key_uniqueness: bool  # several schemas feed one topic: the key carries the schema


def per_pipeline(service: Service, env: Environment, customer: str | None, base: str,
                 captured: Captured) -> SinkSpec:
    """A db-shared service's sink, or one tenant database's."""
    target_schema = _sql_ident(customer) if customer is not None else "${source.schema}"
    return _spec(
        service, env, f"sink-{base}",
        target_schemas=(target_schema,) if customer is not None else captured.schemas,
        topics=captured.topics,
        collection_name_format=f"{target_schema}.${{source.table}}",
        drop_key_field=ROUTER_KEY_FIELD if captured.key_uniqueness else None,
        customer=customer,
        owner=customer,
    )


def one_for_all(service: Service, env: Environment, customers: Sequence[str],
                captured: Sequence[Captured]) -> SinkSpec:
    """One sink for every tenant database of a db-per-tenant service: it reads the
    topics of any customer (one added later too) and writes <customer>.<table>: the
    router makes the topic the customer, `${topic}.${source.table}` the target."""
    escaped = _regex_literal(names.topic_prefix(service.name, None))
    tables = sorted({t for c in captured for t in c.table_names})
    return _spec(
        service, env, f"sink-{names.k8s(service.name)}",
        target_schemas=tuple(sorted(_sql_ident(c) for c in customers)),
        topics=tuple(sorted(t for c in captured for t in c.topics)),
        # Debezium puts the topic in with its dots made '_': the router leaves the
        # customer alone in it
        collection_name_format="${topic}.${source.table}",
        drop_key_field=(ROUTER_KEY_FIELD if any(c.key_uniqueness for c in captured)
                        else None),
        customer=None,
        owner=customers[0],
        topics_regex=f"{escaped}\\.[^.]+\\.({'|'.join(_regex_literal(t) for t in tables)})",
        tenant_route_regex=f"{escaped}\\.([^.]+)\\.[^.]+",
    )


def _spec(service: Service, env: Environment, name: str, *, target_schemas: tuple[str, ...],
          topics: tuple[str, ...], collection_name_format: str, drop_key_field: str | None,
          customer: str | None, owner: str | None, topics_regex: str | None = None,
          tenant_route_regex: str | None = None) -> SinkSpec:
    """The sink `name` of `service` in `env`: where it writes, how and how much are the
    environment's; what it reads and where each record goes, the caller's."""
    ref = connect_refs(env.secrets, env.namespace)
    sink_db = env.sink.database.value if env.sink.database else _sql_ident(service.name)
    return SinkSpec(
        name=name,
        database=ref(sink_db),
        target_schemas=target_schemas,
        connection_url=(f"jdbc:postgresql://{ref(names.url_host(env.sink.host.value))}:"
                        f"{ref(env.sink.port.value)}/{ref(sink_db)}"
                        + (env.sink.tls.url_parameters() if env.sink.tls else "")),
        user=ref(env.sink.user.value),
        password=ref(env.sink.password.value),
        topics=topics,
        collection_name_format=collection_name_format,
        drop_key_field=drop_key_field,
        tasks_max=env.sink_tasks_max,
        batch_size=env.sink_batch_size,
        pool_size=env.sink_connection_pool_size,
        dead_letter_topic=(f"{DEAD_LETTER_PREFIX}.{name}" if env.sink.dead_letter_queue
                           else None),
        customer=customer,
        owner=owner,
        topics_regex=topics_regex,
        tenant_route_regex=tenant_route_regex,
    )

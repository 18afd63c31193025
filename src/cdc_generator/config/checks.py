"""Semantic checks a JSON Schema cannot express, run across all config files.

They run on whatever part of the config could be read: an entry that failed its
schema is left out, and `Unread` names what was left out, so no check reports
something missing only because it was unreadable.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cdc_generator import names, rowfilter
from cdc_generator.config import sink_mode
from cdc_generator.config.model import (
    DEFAULT_SCHEMA,
    Config,
    Database,
    GroupType,
    Isolation,
    ServerGroup,
    Service,
    Setting,
    Table,
)
from cdc_generator.config.providers import PLACEHOLDER
from cdc_generator.errors import Problem
from cdc_generator.rowfilter import CUSTOMER_PLACEHOLDER


@dataclass(frozen=True)
class Unread:
    """What could not be read, so may exist: names of server groups and services
    whose entry or file is invalid, environments likewise (None: the whole
    `environments` section), and whether server-groups.yaml was unreadable."""

    groups: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    environments: frozenset[str] | None = frozenset()
    groups_file: bool = False


def check_config(config: Config, root: Path, unread: Unread = Unread()) -> list[Problem]:
    return [
        *_environments(config, unread),
        *_groups(config, unread),
        *_services(config, unread),
        *_shared_databases(config),
    ]


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known: {', '.join(sorted(candidates))}" if candidates else ""


def _host(setting: Setting, what: str) -> Iterator[Problem]:
    why = names.host_problem(setting.value)
    if why is not None:
        yield setting.origin.problem(
            f"{what} host {setting.value!r} {why}",
            "write a host name, an IP address or a ${VAR} placeholder: no user, password, "
            "port or parameters (those have their own keys)")


def _port(setting: Setting, what: str) -> Iterator[Problem]:
    # the schema's "integer" takes 5432.0 too (JSON has one number type)
    if not setting.value.isdigit() and PLACEHOLDER.fullmatch(setting.value) is None:
        yield setting.origin.problem(f"{what} port {setting.value} is not a whole number",
                                     "write the port as digits, e.g. 5432")


def _environments(config: Config, unread: Unread) -> Iterator[Problem]:
    if not config.environments and unread.environments == frozenset() and not unread.groups_file:
        yield Problem(config.groups_file, 1, 1, "environments",
                      "no environments defined", "remove 'environments:' or add one")
    for env in config.environments:
        yield from _host(env.sink.host, f"environment {env.name!r} sink")
        yield from _port(env.sink.port, f"environment {env.name!r} sink")
        topics = env.topics
        if topics.min_insync_replicas > topics.replication_factor:
            yield topics.origin.problem(
                f"min_insync_replicas {topics.min_insync_replicas} is more than "
                f"replication_factor {topics.replication_factor}: no write could ever succeed",
                "lower min_insync_replicas, or raise replication_factor")


def _groups(config: Config, unread: Unread) -> Iterator[Problem]:
    service_names = {s.name for s in config.services} | unread.services
    env_names = None if unread.environments is None else (
        {e.name for e in config.environments} | unread.environments)
    by_k8s: dict[str, str] = {}
    served_by: dict[str, ServerGroup] = {}
    for group in config.server_groups:
        if group.name in by_k8s.values():
            yield group.origin.problem(f"server group {group.name!r} is defined twice",
                                       "rename or merge one of the two groups")
        by_k8s[group.name] = group.name
        yield from _host(group.server.host, f"server group {group.name!r}")
        yield from _port(group.server.port, f"server group {group.name!r}")
        if group.type is GroupType.DB_PER_TENANT and group.isolation is not Isolation.COLUMN:
            yield group.origin.problem(
                "isolation applies to db-shared groups only",
                "remove 'isolation': each tenant has its own database",
            )
        for service in sorted({s for db in group.databases if (s := group.service_of(db))}):
            first = served_by.setdefault(service, group)
            if first is not group and first.name != group.name:
                yield group.origin.problem(
                    f"service {service!r} is served by server groups {first.name!r} and "
                    f"{group.name!r}; a service reads from one server group",
                    "keep its databases in the group its services/ file names")
        yield from _group_databases(group, service_names, env_names)


def _group_databases(
    group: ServerGroup, service_names: set[str], env_names: set[str] | None
) -> Iterator[Problem]:
    customers: dict[str, str] = {}
    shared_services: dict[str, str] = {}
    missing: set[str] = set()  # services without a file, reported once per group
    for db in group.databases:
        service = group.service_of(db)
        if service is None:
            yield db.origin.problem(
                f"database {db.name!r} names no service",
                "set 'service:' on the database or on the server group",
            )
        elif service not in service_names and service not in missing:
            missing.add(service)
            # where the name is written: the database's own service:, or the group's
            where = db.at("service") if db.service else group.at("service")
            yield where.problem(
                f"service {service!r} has no file services/{service}.yaml",
                f"list the tables it can capture with `cdc-generator manage-service --create "
                f"{service} --server-group {group.name} --inspect`, then run that with "
                "--add-table TABLE in place of --inspect",
            )
        for env in dict(db.name_by_environment):
            if env_names is not None and env not in env_names:
                yield db.at(f"name_by_environment.{env}").problem(
                    f"name_by_environment names unknown environment {env!r}",
                    _suggest(env, sorted(env_names)),
                )
        seen_schemas: dict[str, str] = {}
        for schema in db.schemas:
            if schema.lower() in seen_schemas:
                yield db.origin.problem(
                    f"schema {schema!r} is listed twice in database {db.name!r}"
                    + ("" if seen_schemas[schema.lower()] == schema
                       else f" (as {seen_schemas[schema.lower()]!r}: Debezium matches "
                            "names regardless of case)"),
                    "list each schema once")
            seen_schemas.setdefault(schema.lower(), schema)
        if group.type is GroupType.DB_PER_TENANT:
            yield from _tenant_database(group, db, service, customers)
            continue  # isolation, schema or other, is refused for the whole group
        if db.customer is not None:
            yield db.at("customer").problem(
                "customer applies to db-per-tenant groups only",
                "remove 'customer:' or make the group db-per-tenant",
            )
        if service is not None:
            if service in shared_services:
                yield db.origin.problem(
                    f"service {service!r} has two databases in db-shared group "
                    f"{group.name!r} ({shared_services[service]!r} and {db.name!r})",
                    "a db-shared service reads exactly one database",
                )
            shared_services[service] = db.name
        if group.isolation is Isolation.SCHEMA and not db.schemas:
            yield db.origin.problem(
                "schema isolation needs the tenant schemas listed",
                "add 'schemas: [customer_a, customer_b, ...]'",
            )


def _tenant_database(group: ServerGroup, db: Database, service: str | None,
                     customers: dict[str, str]) -> Iterator[Problem]:
    """A db-per-tenant database: its customer, distinct from the group's others."""
    if db.customer is None:
        yield db.origin.problem(
            f"database {db.name!r} in db-per-tenant group {group.name!r} has no customer",
            "add 'customer: <tenant id>'",
        )
        return
    key = f"{service}/{names.k8s(db.customer)}"
    if key in customers:
        same = customers[key] == db.customer
        yield db.at("customer").problem(
            f"customer {db.customer!r} appears twice for service {service!r}"
            if same else
            f"customers {customers[key]!r} and {db.customer!r} collide after "
            f"normalisation to {names.k8s(db.customer)!r}",
            "each tenant database needs a distinct customer id",
        )
    customers[key] = db.customer
    if not names.is_dns_label(names.k8s(db.customer)):
        yield db.at("customer").problem(
            f"customer {db.customer!r} cannot become a Kubernetes name "
            f"({names.k8s(db.customer)!r} is not a DNS-1123 label)",
            "use letters, digits, '-' or '_', starting and ending with a letter or digit",
        )


def _shared_databases(config: Config) -> Iterator[Problem]:
    """One source database read for two customers (or for one customer and, by a
    db-shared group, for all): a tenant's pipeline would read another's data.
    Two servers are the same when their host settings are the same text and
    their ports are the same text or not both literal numbers."""
    envs: list[str | None] = [e.name for e in config.environments] or [None]
    reported: set[int] = set()
    for env in envs:
        first: dict[tuple[str, str], list[tuple[ServerGroup, Database]]] = defaultdict(list)
        for group in config.server_groups:
            for db in group.databases:
                name = db.name if env is None else db.name_in(env)
                first[group.server.host.value, name].append((group, db))
        for (_host_text, name), readers in first.items():
            for i, (group, db) in enumerate(readers):
                customer = _reader(group, db)
                for other_group, other_db in readers[:i]:
                    other = _reader(other_group, other_db)
                    if (customer == other or (customer is None and other is None)
                            or not _same_port(group, other_group) or id(db) in reported):
                        continue
                    reported.add(id(db))
                    yield db.origin.problem(
                        f"database {name!r} on server {group.server.host.value!r} is read for "
                        f"{_for(customer)} and, in server group {other_group.name!r}, for "
                        f"{_for(other)}" + (f" (environment {env!r})" if env else ""),
                        "each tenant needs its own database: a pipeline would read another "
                        "tenant's data")


def _reader(group: ServerGroup, db: Database) -> str | None:
    return db.customer if group.type is GroupType.DB_PER_TENANT else None


def _for(customer: str | None) -> str:
    return "all customers (db-shared)" if customer is None else f"customer {customer!r}"


def _same_port(a: ServerGroup, b: ServerGroup) -> bool:
    pa, pb = a.server.port.value, b.server.port.value
    return pa == pb or not (pa.isdigit() and pb.isdigit())


def _services(config: Config, unread: Unread) -> Iterator[Problem]:
    group_names = sorted(g.name for g in config.server_groups)
    seen_k8s: dict[str, str] = {}
    for service in config.services:
        k8s = names.k8s(service.name)
        if not names.is_dns_label(k8s):
            yield service.at("service").problem(
                f"service name {service.name!r} cannot become a Kubernetes name ({k8s!r})",
                "use letters, digits, '-' or '_', starting and ending with a letter or digit",
            )
        elif k8s in seen_k8s:
            yield service.at("service").problem(
                f"services {seen_k8s[k8s]!r} and {service.name!r} collide after normalisation "
                f"to {k8s!r}", "rename one of them",
            )
        seen_k8s[k8s] = service.name
        env_names = sorted(e.name for e in config.environments)
        for env, _state in service.states:
            if env not in env_names:
                yield service.at(f"state.{env}").problem(
                    f"state names unknown environment {env!r}", _suggest(env, env_names))
        group = config.group(service.server_group)
        if group is None:
            if not unread.groups_file and service.server_group not in unread.groups:
                yield service.at("server_group").problem(
                    f"server group {service.server_group!r} does not exist in "
                    f"{config.groups_file}", _suggest(service.server_group, group_names),
                )
            yield from _tables(service, None)
            continue
        if not group.databases_of(service.name):
            yield service.at("server_group").problem(
                f"server group {group.name!r} has no database for service {service.name!r}",
                f"add a database with 'service: {service.name}' to group {group.name!r} in "
                f"{config.groups_file}, or name the group that has one",
            )
        yield from sink_mode.problems(service, group, config.groups_file)
        yield from _tables(service, group)


def _tables(service: Service, group: ServerGroup | None) -> Iterator[Problem]:
    """The checks of a service's tables; those needing its server group only when
    it could be read."""
    dbs = group.databases_of(service.name) if group is not None else []
    listed = {s for db in dbs for s in db.schemas}
    by_name: dict[str, set[str | None]] = defaultdict(set)
    yield from _captured_twice(service, dbs)
    for table in service.tables:
        by_name[table.name.lower()].add(table.schema)
        if not table.primary_key:
            yield table.origin.problem(
                f"table {table.name!r} has no primary_key",
                "set primary_key: the column, or list of columns, that identifies a row "
                "(the table's primary key in the database)",
            )
        if table.filter:
            yield from _filter(table, group, dbs)
        if group is None:
            continue
        if table.schema and listed and table.schema not in listed:
            yield table.at("schema").problem(
                f"schema {table.schema!r} is not among the database's schemas "
                f"({', '.join(sorted(listed))})",
                "add the schema to the database in server-groups.yaml or fix the table",
            )
        if table.schema is None and not listed and group.isolation is Isolation.SCHEMA:
            yield table.origin.problem("table has no schema and the database lists none",
                                       "set 'schema:' on the table or list the database's schemas")
    if group is not None and group.type is GroupType.DB_PER_TENANT:
        for name, schemas in by_name.items():
            effective = {s or DEFAULT_SCHEMA for s in schemas}
            if len(schemas) > 1 or (None in schemas and len(listed) > 1):
                yield service.origin.problem(
                    f"table {name!r} would be captured from several schemas "
                    f"({', '.join(sorted(effective | listed))}) into one tenant topic",
                    "in a db-per-tenant service give each table an explicit schema",
                )


def _filter(table: Table, group: ServerGroup | None, dbs: list[Database]) -> Iterator[Problem]:
    text = table.filter or ""
    try:
        rowfilter.check_characters(text)  # where the user wrote them, before substitution
        rowfilter.canonical(text.replace(CUSTOMER_PLACEHOLDER, "tenant"))
    except rowfilter.RowFilterError as exc:
        yield table.at("filter").problem(str(exc), exc.hint)
        return
    if CUSTOMER_PLACEHOLDER not in text:
        return
    if group is None:  # the ids are unknown, but not where the placeholder stands
        why = rowfilter.placement_problem(text)
        if why is not None:
            yield table.at("filter").problem(why, _FILTER_HINT)
        return
    if group.type is GroupType.DB_SHARED:
        yield table.at("filter").problem(
            f"{CUSTOMER_PLACEHOLDER} in a filter needs a db-per-tenant group",
            "a db-shared pipeline serves all customers: write the customer ids literally",
        )
        return
    for db in dbs:
        if db.customer is None:
            continue
        why = rowfilter.substitution_problem(text, db.customer)
        if why is not None:
            yield table.at("filter").problem(f"for customer {db.customer!r}, {why}",
                                             _FILTER_HINT)
            return


_FILTER_HINT = (f"write {CUSTOMER_PLACEHOLDER} only inside a quoted string, e.g. "
                f"owner_id = '{CUSTOMER_PLACEHOLDER}', and not in a LIKE pattern "
                "when customer ids hold '_'")


def _captured_twice(service: Service, dbs: list[Database]) -> Iterator[Problem]:
    """Two entries that capture the same schema.table of one database: an entry
    without a schema covers every schema of the database (`public` if none).
    Debezium matches names regardless of case, so `Users` and `users` are one."""
    first: dict[tuple[str, str], int] = {}  # (schema, table) -> index of its first entry
    listings = {db.schemas: db for db in dbs}  # tenants list the same few schemas
    for index, table in enumerate(service.tables):
        covered = sorted({(schema.lower(), table.name.lower())
                          for db in listings.values() for schema in table.schemas_in(db)}
                         or {((table.schema or "*").lower(), table.name.lower())})
        again = [key for key in covered if key in first]
        if again:
            schema, name = again[0]
            where = name if schema == "*" else f"{schema}.{name}"
            yield table.origin.problem(
                f"table {where!r} is listed twice (first at table #{first[again[0]] + 1})",
                "remove the duplicate entry (an entry without 'schema:' covers every "
                "schema of the database; names differing only in case are the same table)",
            )
        for key in covered:
            first.setdefault(key, index)

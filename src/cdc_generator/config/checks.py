"""Semantic checks a JSON Schema cannot express, run across all config files."""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterator

from cdc_generator import names, rowfilter
from cdc_generator.config.model import (
    DEFAULT_SCHEMA,
    Config,
    Database,
    GroupType,
    Isolation,
    ServerGroup,
    Service,
    Setting,
)
from cdc_generator.config.schema import SECRET_HINT
from cdc_generator.errors import Problem
from cdc_generator.rowfilter import CUSTOMER_PLACEHOLDER


def check_config(config: Config, *, set_aside: frozenset[str] = frozenset(),
                 groups_known: bool = True) -> list[Problem]:
    """Every semantic problem. `set_aside`: names of services whose file could not
    be used (its own problems are reported already), so nothing that refers to
    them is a problem too. Without `groups_known` (server-groups.yaml could not be
    used) only what the service files say by themselves is checked."""
    if not groups_known:
        return list(_services(config, set_aside, groups_known=False))
    return [
        *_environments(config),
        *_groups(config, set_aside),
        *_services(config, set_aside),
    ]


def _suggest(name: str, candidates: list[str]) -> str:
    close = difflib.get_close_matches(name, candidates, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"known: {', '.join(sorted(candidates))}" if candidates else ""


def _password(setting: Setting, what: str) -> Iterator[Problem]:
    if not setting.is_placeholder:
        yield setting.origin.problem(
            f"{what} password is a literal value; secrets must not be committed",
            SECRET_HINT,
        )


def _environments(config: Config) -> Iterator[Problem]:
    if not config.environments:
        yield Problem(config.groups_file, 1, 1, "environments",
                      "no environments defined", "remove 'environments:' or add one")
    for env in config.environments:
        yield from _password(env.sink.password, f"environment {env.name!r} sink")


def _groups(config: Config, set_aside: frozenset[str]) -> Iterator[Problem]:
    service_names = {s.name for s in config.services} | set_aside
    env_names = {e.name for e in config.environments}
    by_k8s: dict[str, str] = {}
    for group in config.server_groups:
        if group.name in by_k8s.values():
            yield group.origin.problem(f"server group {group.name!r} is defined twice",
                                       "rename or merge one of the two groups")
        by_k8s[group.name] = group.name
        yield from _password(group.server.password, f"server group {group.name!r}")
        if group.type is GroupType.DB_PER_TENANT and group.isolation is not Isolation.COLUMN:
            yield group.origin.problem(
                "isolation applies to db-shared groups only",
                "remove 'isolation': each tenant has its own database",
            )
        yield from _group_databases(group, service_names, env_names)


def _group_databases(
    group: ServerGroup, service_names: set[str], env_names: set[str]
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
            if env not in env_names:
                yield db.at(f"name_by_environment.{env}").problem(
                    f"name_by_environment names unknown environment {env!r}",
                    _suggest(env, sorted(env_names)),
                )
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


def _services(config: Config, set_aside: frozenset[str], *,
              groups_known: bool = True) -> Iterator[Problem]:
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
        if not groups_known:  # server-groups.yaml's own problems are reported already
            yield from _tables(service, None)
            continue
        group = config.group(service.server_group)
        if group is None:
            yield service.at("server_group").problem(
                f"server group {service.server_group!r} does not exist in {config.groups_file}",
                _suggest(service.server_group, group_names),
            )
            continue
        if not group.databases_of(service.name):
            yield service.at("server_group").problem(
                f"server group {group.name!r} has no database for service {service.name!r}",
                f"add a database with 'service: {service.name}' to group {group.name!r} in "
                f"{config.groups_file}, or name the group that has one",
            )
        yield from _tables(service, group)


def _tables(service: Service, group: ServerGroup | None) -> Iterator[Problem]:
    dbs = group.databases_of(service.name) if group is not None else []
    listed = {s for db in dbs for s in db.schemas}
    by_name: dict[str, set[str | None]] = defaultdict(set)
    yield from _captured_twice(service, dbs)
    for table in service.tables:
        by_name[table.name].add(table.schema)
        if not table.primary_key:
            yield table.origin.problem(
                f"table {table.name!r} has no primary_key",
                "set primary_key: the column, or list of columns, that identifies a row "
                "(the table's primary key in the database)",
            )
        if table.schema and listed and table.schema not in listed:
            yield table.at("schema").problem(
                f"schema {table.schema!r} is not among the database's schemas "
                f"({', '.join(sorted(listed))})",
                "add the schema to the database in server-groups.yaml or fix the table",
            )
        if (table.schema is None and not listed and group is not None
                and group.isolation is Isolation.SCHEMA):
            yield table.origin.problem("table has no schema and the database lists none",
                                       "set 'schema:' on the table or list the database's schemas")
        if table.filter:
            try:
                rowfilter.canonical(table.filter.replace(CUSTOMER_PLACEHOLDER, "tenant"))
            except rowfilter.RowFilterError as exc:
                yield table.at("filter").problem(str(exc), exc.hint)
        if (table.filter and CUSTOMER_PLACEHOLDER in table.filter and group is not None
                and group.type is GroupType.DB_SHARED):
            yield table.at("filter").problem(
                f"{CUSTOMER_PLACEHOLDER} in a filter needs a db-per-tenant group",
                "a db-shared pipeline serves all customers: write the customer ids literally",
            )
    if group is not None and group.type is GroupType.DB_PER_TENANT:
        for name, schemas in by_name.items():
            effective = {s or DEFAULT_SCHEMA for s in schemas}
            if len(schemas) > 1 or (None in schemas and len(listed) > 1):
                yield service.origin.problem(
                    f"table {name!r} would be captured from several schemas "
                    f"({', '.join(sorted(effective | listed))}) into one tenant topic",
                    "in a db-per-tenant service give each table an explicit schema",
                )

def _captured_twice(service: Service, dbs: list[Database]) -> Iterator[Problem]:
    """Two entries that capture the same schema.table of one database: an entry
    without a schema covers every schema of the database (`public` if none)."""
    first: dict[tuple[str, str], int] = {}  # (schema, table) -> index of its first entry
    for index, table in enumerate(service.tables):
        covered = sorted({(schema, table.name) for db in dbs for schema in table.schemas_in(db)}
                         or {(table.schema or "*", table.name)})  # no database: as written
        again = [key for key in covered if key in first]
        if again:
            schema, name = again[0]
            where = name if schema == "*" else f"{schema}.{name}"
            yield table.origin.problem(
                f"table {where!r} is listed twice (first at table #{first[again[0]] + 1})",
                "remove the duplicate entry (an entry without 'schema:' covers every "
                "schema of the database)",
            )
        for key in covered:
            first.setdefault(key, index)


"""A local PostgreSQL seeded from this repository's own config, for trying things out.

Every database of every server group is created on one throwaway server
(cdc_generator.localpg), with the schemas it lists and the tables its service
captures. Columns come from the config: the primary key, the columns row
filters read, and a couple of generic ones, so nothing here knows a service name.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cdc_generator import localpg, publication, rowfilter
from cdc_generator.config.model import (
    Config,
    GroupType,
    ServerGroup,
    Setting,
    Table,
)
from cdc_generator.config.providers import PLACEHOLDER
from cdc_generator.plan import build_plan
from cdc_generator.publication import ident, literal
from cdc_generator.rowfilter import CUSTOMER_PLACEHOLDER

GENERIC_COLUMNS = (("name", "text"), ("updated_at", "timestamptz NOT NULL DEFAULT now()"))
SEED_ROWS = 2


@dataclass(frozen=True)
class SeedTable:
    schema: str
    name: str
    columns: tuple[tuple[str, str], ...]  # (name, SQL type)
    primary_key: tuple[str, ...]
    filter_columns: tuple[str, ...]


@dataclass(frozen=True)
class SeedDatabase:
    name: str
    customer: str | None
    schemas: tuple[str, ...]
    tables: tuple[SeedTable, ...]


@dataclass(frozen=True)
class DevDb:
    server: localpg.LocalPostgres
    databases: tuple[SeedDatabase, ...]
    exports: tuple[tuple[str, str], ...]  # (VAR, value), the password included
    notes: tuple[str, ...]


def seed_plan(config: Config, environment: str) -> list[SeedDatabase]:
    """What to create: one entry per distinct database name across the server groups."""
    services = {s.name: s for s in config.services}
    out: dict[str, SeedDatabase] = {}
    for group in config.server_groups:
        for db in group.databases:
            name = db.name_in(environment)
            service = services.get(group.service_of(db) or "")
            if name in out or service is None:
                continue
            customer = db.customer if group.type is GroupType.DB_PER_TENANT else None
            schemas = db.schemas_or_default
            tables = tuple(
                _seed_table(schema, table, customer)
                for table in service.tables
                for schema in table.schemas_in(db)
            )
            all_schemas = tuple(dict.fromkeys([*schemas, *(t.schema for t in tables)]))
            out[name] = SeedDatabase(name, customer, all_schemas, tables)
    return list(out.values())


def _seed_table(schema: str, table: Table, customer: str | None) -> SeedTable:
    filter_columns: tuple[str, ...] = ()
    if table.filter:
        text = table.filter.replace(CUSTOMER_PLACEHOLDER, customer or "tenant")
        filter_columns = tuple(sorted(rowfilter.referenced_columns(text)))
    columns: dict[str, str] = {}
    for col in table.primary_key:
        numeric = col == "id" or col.endswith(("_id", "_no", "_number"))
        columns[col] = "bigint" if numeric and col not in filter_columns else "text"
    for col in filter_columns:
        columns.setdefault(col, "text")
    for col, sql_type in GENERIC_COLUMNS:
        columns.setdefault(col, sql_type)
    return SeedTable(schema, table.name, tuple(columns.items()), table.primary_key,
                     filter_columns)


def seed_statements(db: SeedDatabase) -> Iterator[str]:
    for schema in db.schemas:
        yield f"CREATE SCHEMA IF NOT EXISTS {ident(schema)}"
    for t in db.tables:
        qualified = f"{ident(t.schema)}.{ident(t.name)}"
        cols = [f"{ident(name)} {sql_type}" for name, sql_type in t.columns]
        if t.primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(ident(c) for c in t.primary_key)})")
        yield f"CREATE TABLE IF NOT EXISTS {qualified} ({', '.join(cols)})"
        if not set(t.filter_columns) <= set(t.primary_key):
            # a row filter may only read replica-identity columns (see preflight)
            yield f"ALTER TABLE {qualified} REPLICA IDENTITY FULL"
        for n in range(1, SEED_ROWS + 1):
            yield insert_statement(t, n, db.customer) + " ON CONFLICT DO NOTHING"


def seed_values(table: SeedTable, n: int, customer: str | None) -> dict[str, str]:
    """Column -> SQL literal of seed row `n` (odd rows belong to the tenant, even ones
    are shared where a filter reads a column); defaulted columns left out."""
    return {name: _value(table, name, sql_type, n, customer) for name, sql_type in table.columns
            if not sql_type.startswith("timestamptz")}


def insert_statement(table: SeedTable, n: int, customer: str | None) -> str:
    """INSERT of seed row `n`."""
    values = seed_values(table, n, customer)
    return (f"INSERT INTO {ident(table.schema)}.{ident(table.name)} "
            f"({', '.join(ident(name) for name in values)}) VALUES ({', '.join(values.values())})")


def _value(table: SeedTable, column: str, sql_type: str, n: int, customer: str | None) -> str:
    if column in table.filter_columns:
        # the first row belongs to the tenant, the second is shared: a filter shows
        return literal((customer or "tenant") if n % 2 else "shared")
    if sql_type == "bigint":
        return str(n)
    return literal(f"{column} {n}")


def exports(config: Config, server: localpg.LocalPostgres) -> tuple[list[tuple[str, str]],
                                                                    list[str]]:
    """The `${VAR}`s of every server block, pointed at `server`; notes for the rest."""
    out: dict[str, str] = {}
    notes: list[str] = []
    for group in config.server_groups:
        for setting, value in _server_values(group, server):
            match = PLACEHOLDER.fullmatch(setting.value)
            if match:
                out.setdefault(match.group(1), value)
            elif PLACEHOLDER.search(setting.value) or setting.value != value:
                notes.append(f"server group {group.name!r}: {setting.origin.key_path} is "
                             f"{setting.value!r}, not a single ${{VAR}}: use --dsn against the "
                             "local server instead")
    return sorted(out.items()), notes


def _server_values(group: ServerGroup,
                   server: localpg.LocalPostgres) -> list[tuple[Setting, str]]:
    s = group.server
    return [(s.host, server.host), (s.port, str(server.port)), (s.user, server.user),
            (s.password, server.password)]


def publication_statements(config: Config, environment: str) -> Iterator[tuple[str, str]]:
    """(database, SQL) of what each of the environment's source databases needs
    before its connector runs (control tables, publication): the same SQL as
    generated/sql/<service>/<env>/source*.sql, so preflight finds it."""
    for pipeline in build_plan(config, environment=environment).pipelines:
        yield pipeline.source.database, publication.setup_sql(pipeline.source)


def start(config: Config, environment: str, *, base_dir: Path | None = None,
          keep: bool = False) -> DevDb:
    """Start a server, create and seed every database, create the publications
    that must exist before the connectors start; the caller stops it."""
    server = localpg.start(base_dir, keep=keep)
    try:
        databases = seed_plan(config, environment)
        for db in databases:
            server.create_database(db.name)
            with server.connect(db.name) as conn:
                for statement in seed_statements(db):
                    conn.execute(statement.encode())  # built here, not user text
        for dbname, sql in publication_statements(config, environment):
            with server.connect(dbname) as conn:
                conn.execute(sql.encode())  # rendered from the checked plan
        found, notes = exports(config, server)
    except BaseException:
        server.stop()
        raise
    return DevDb(server, tuple(databases), tuple(found), tuple(notes))

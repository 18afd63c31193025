"""`cdc-generator manage-service`: inspect the live source, add/remove tables, create a service."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cdc_generator.config.model import Database, ServerGroup, Service
    from cdc_generator.db.connection import Target
    from cdc_generator.manage import InspectedTable, NewTable
    from cdc_generator.report import Report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", metavar="S", help="the service to inspect or edit")
    who.add_argument("--create", metavar="S",
                     help="create services/S.yaml (with --server-group and --add-table; "
                          "--inspect lists the tables it can capture)")
    parser.add_argument("--server-group", metavar="G", help="with --create: the server group")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--inspect", action="store_true",
                      help="list the source tables: primary key, columns, replica identity, "
                           "estimated rows, tracked")
    what.add_argument("--add-table", metavar="T", help="start capturing table T")
    what.add_argument("--remove-table", metavar="T", help="stop capturing table T")
    parser.add_argument("--schema", metavar="S",
                        help="the table's schema (default: the database's schemas, else public)")
    parser.add_argument("--primary-key", metavar="COL[,COL]",
                        help="with --add-table: the key columns (default: read from the table)")
    parser.add_argument("--filter", metavar="EXPR",
                        help="with --add-table: a row filter, "
                             "e.g. \"owner_id = '{{CUSTOMER_ID}}'\"")
    parser.add_argument("--offline", action="store_true",
                        help="with --add-table: do not connect (needs --primary-key)")
    parser.add_argument("--environment", metavar="E",
                        help="use E's database name (name_by_environment)")
    parser.add_argument("--customer", metavar="C",
                        help="db-per-tenant: the tenant database to read (default: the first)")
    parser.add_argument("--dsn", help="connect with this libpq DSN instead of the server block")


@dataclass(frozen=True)
class Options:
    root: Path
    service: str  # the service to inspect or edit; with create, the new one
    create: bool
    server_group: str | None
    inspect: bool
    add_table: str | None
    remove_table: str | None
    schema: str | None
    primary_key: str | None
    filter: str | None
    offline: bool
    environment: str | None
    customer: str | None
    dsn: str | None

    @property
    def label(self) -> str:
        action = ("--inspect" if self.inspect else "--add-table" if self.add_table
                  else "--remove-table")
        return f"manage-service {'--create ' if self.create else ''}{action}"


def options(args: argparse.Namespace) -> Options:
    from cdc_generator.errors import UsageError

    if args.create:
        if not (args.server_group and (args.add_table or args.inspect)):
            raise UsageError("--create needs --server-group G and --add-table T (a service "
                             "captures at least one table), or --inspect to list the tables")
        if args.remove_table:
            raise UsageError("--remove-table applies to an existing service (--service S)")
    elif args.server_group:
        raise UsageError("--server-group applies to --create only")
    elif not (args.inspect or args.add_table or args.remove_table):
        raise UsageError("say what to do: --inspect, --add-table T or --remove-table T")
    return Options(
        root=args.root, service=args.create or args.service, create=bool(args.create),
        server_group=args.server_group, inspect=args.inspect, add_table=args.add_table,
        remove_table=args.remove_table, schema=args.schema, primary_key=args.primary_key,
        filter=args.filter, offline=args.offline, environment=args.environment,
        customer=args.customer, dsn=args.dsn)


def run(options: Options) -> Report:
    return _create(options) if options.create else _existing(options)


def _existing(args: Options) -> Report:
    from cdc_generator import manage
    from cdc_generator.config.repo import load_config
    from cdc_generator.errors import UsageError

    config = load_config(args.root)
    service = next((s for s in config.services if s.name == args.service), None)
    if service is None:
        known = [s.name for s in config.services]
        raise UsageError(f"unknown service {args.service!r}; {manage.suggest(args.service, known)}")
    group = config.group(service.server_group)
    assert group is not None  # load_config checked the reference
    database = _database(group, service.name, args.customer)
    path = args.root / service.file  # services/<name>.yaml or .yml
    shown = service.file
    if args.inspect:
        return _inspect(args, service, group, database)
    if args.remove_table:
        text = manage.remove_table_text(manage.read_text(path), shown, service.name,
                                        args.remove_table, args.schema)
        manage.write_atomic(path, text)
        return _edited(args, shown, "removed", name=args.remove_table, schema=args.schema)
    assert args.add_table is not None
    manage.refuse_tracked(service, database, args.add_table, args.schema, shown)
    table, notes = _new_table(args, group, database)
    text = manage.add_table_text(manage.read_text(path), shown, table)
    manage.write_atomic(path, text)
    return _edited(args, shown, "added", name=table.name, schema=table.schema, table=table,
                   notes=notes)


def _create(args: Options) -> Report:
    from cdc_generator import manage
    from cdc_generator.errors import UsageError

    path = manage.service_path(args.root, args.service)
    if path.exists():
        raise UsageError(f"services/{path.name} already exists; use --service {args.service}")
    assert args.server_group is not None  # options() made sure
    groups = manage.load_groups(args.root)
    group = next((g for g in groups if g.name == args.server_group), None)
    if group is None:
        known = [g.name for g in groups]
        raise UsageError(f"unknown server group {args.server_group!r}; "
                         f"{manage.suggest(args.server_group, known)}")
    database = _database(group, args.service, args.customer)
    if args.inspect:  # the tables the new service can capture
        return _inspect(args, None, group, database)
    table, notes = _new_table(args, group, database)
    schema_line = (args.root / manage.SCHEMA_FILE).is_file()
    if not schema_line:  # a `$schema` line would point at nothing
        notes.append(f"no `$schema` line for editors: this repository has no "
                     f"{manage.SCHEMA_FILE} (copy it from the package's cdc_generator/schemas/ "
                     "to have one)")
    manage.write_atomic(path, manage.new_service_text(args.service, group.name, table,
                                                      schema_line=schema_line))
    return _edited(args, f"services/{path.name}", "created", name=table.name,
                   schema=table.schema, table=table, notes=notes)


def _edited(args: Options, shown: str, action: str, *, name: str, schema: str | None,
            table: NewTable | None = None, notes: list[str] | None = None) -> Report:
    """The report of an edit of `shown`: `action` (added, removed, created) on table `name`."""
    from cdc_generator.report import Report

    notes = notes or []
    what = {"added": f"added {name}", "removed": f"removed {name}",
            "created": f"created with table {name}"}[action]
    if table is not None and action == "added":
        what += f" (primary key {', '.join(table.primary_key)})"
    entry = None if table is None else {
        "schema": table.schema, "name": table.name, "primary_key": list(table.primary_key),
        "filter": table.filter}
    return Report(args.label, result={
        "file": shown, "action": action, "table": name, "schema": schema, "entry": entry,
        "notes": notes}, messages=(*(f"note: {n}" for n in notes),
                                   f"{shown}: {what}; run `cdc-generator generate`"))


def _database(group: ServerGroup, service: str, customer: str | None) -> Database:
    from cdc_generator.db.connection import pick_databases
    from cdc_generator.errors import UsageError

    databases = pick_databases(group, service, customer)
    if not databases:
        raise UsageError(f"server group {group.name!r} has no database for service {service!r}: "
                         f"add one with 'service: {service}' to server-groups.yaml first")
    return databases[0]


def _target(args: Options, group: ServerGroup, database: Database) -> Target:
    from cdc_generator.db import connection

    if args.dsn:
        dbname = database.name_in(args.environment) if args.environment else database.name
        return connection.target_from_dsn(args.dsn, dbname, database.customer)
    return connection.target_for(group, database, args.environment)


def _new_table(args: Options, group: ServerGroup,
               database: Database) -> tuple[NewTable, list[str]]:
    from cdc_generator import manage
    from cdc_generator.db.connection import connect
    from cdc_generator.db.inspect import inspect_tables
    from cdc_generator.errors import UsageError

    assert args.add_table is not None
    primary_key = tuple(c.strip() for c in (args.primary_key or "").split(",") if c.strip())
    entry_schema = args.schema or (None if database.schemas else "public")
    if args.filter is not None:
        manage.check_filter(args.filter, database.customer)
    if args.offline:
        if not primary_key:
            raise UsageError("--offline needs --primary-key (it cannot read the table)")
        return manage.NewTable(entry_schema, args.add_table, primary_key, args.filter), []
    schemas = database.schemas_for(args.schema)
    target = _target(args, group, database)
    with connect(target) as conn:
        found = inspect_tables(conn, schemas)
    return manage.table_from_database(args.add_table, entry_schema, schemas, found,
                                      primary_key=primary_key, filter_expr=args.filter,
                                      customer=database.customer)


def _inspect(args: Options, service: Service | None, group: ServerGroup,
             database: Database) -> Report:
    from cdc_generator import manage
    from cdc_generator.db.connection import connect
    from cdc_generator.db.inspect import inspect_tables, schemas_with_tables
    from cdc_generator.errors import UsageError
    from cdc_generator.report import Report

    target = _target(args, group, database)
    schemas = database.schemas_for(args.schema)
    with connect(target) as conn:
        rows = manage.inspection(service, database, inspect_tables(conn, schemas))
        known = schemas_with_tables(conn) if not rows else list(schemas)
    if args.schema and args.schema not in known:
        raise UsageError(f"database {target.dbname} has no tables in schema {args.schema!r}",
                         manage.suggest(args.schema, known))
    messages = () if rows else (f"no tables in schema {', '.join(schemas)}; the schemas with "
                                f"tables: {', '.join(known) or 'none'}",)
    return Report(args.label, result={
        "service": args.service, "database": target.dbname, "schemas": list(schemas),
        "tables": [r.as_dict() for r in rows]},
        output=inspection_text(rows, target.describe()), messages=messages)


def inspection_text(rows: Sequence[InspectedTable], where: str) -> str:
    """A table of the inspected tables; '?' rows (never analyzed) explained below it."""
    header = ("table", "primary key", "columns", "replica identity", "est. rows", "tracked")
    body = [(r.table.qualified, ",".join(r.table.primary_key) or "-", str(len(r.table.columns)),
             r.table.replica_identity,
             "?" if r.table.estimated_rows is None else str(r.table.estimated_rows),
             "yes" if r.tracked else "") for r in rows]
    widths = [max(len(row[i]) for row in (header, *body)) for i in range(len(header))]
    lines = [f"{where}: {len(rows)} tables, {sum(r.tracked for r in rows)} tracked"]
    for row in (header, *body):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if any(r.table.estimated_rows is None for r in rows):
        lines.append("est. rows ?: PostgreSQL has no estimate yet (the table was never vacuumed "
                     "or analyzed); ANALYZE makes one")
    return "\n".join(lines) + "\n"

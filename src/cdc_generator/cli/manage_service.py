"""`cdc-generator manage-service`: inspect the live source, add/remove tables, create a service."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from cdc_generator.cli import common

if TYPE_CHECKING:
    from cdc_generator.config.model import Database, ServerGroup, Service
    from cdc_generator.db.connection import Target
    from cdc_generator.manage import NewTable

HELP = "inspect a service's source database and add or remove tables in services/<S>.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--service", metavar="S", help="the service to inspect or edit")
    who.add_argument("--create", metavar="S",
                     help="create services/S.yaml (with --server-group and --add-table)")
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
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="--inspect output format")


def run(args: argparse.Namespace) -> int:
    def body() -> int:
        from cdc_generator.errors import UsageError

        if args.create:
            if not (args.server_group and args.add_table):
                raise UsageError("--create needs --server-group G and --add-table T "
                                 "(a service captures at least one table)")
            return _create(args)
        if args.server_group:
            raise UsageError("--server-group applies to --create only")
        if not (args.inspect or args.add_table or args.remove_table):
            raise UsageError("say what to do: --inspect, --add-table T or --remove-table T")
        return _existing(args)

    return common.guarded(args, "manage-service", body)


def _existing(args: argparse.Namespace) -> int:
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
        text = manage.remove_table_text(manage.read_text(path), shown,
                                        args.remove_table, args.schema)
        manage.write_atomic(path, text)
        sys.stderr.write(f"{shown}: removed {args.remove_table}; run `cdc-generator generate`\n")
        return common.EXIT_OK
    manage.refuse_tracked(service, database, args.add_table, args.schema, shown)
    table, notes = _new_table(args, group, database)
    text = manage.add_table_text(manage.read_text(path), shown, table)
    manage.write_atomic(path, text)
    _done(shown, f"added {table.name} (primary key {', '.join(table.primary_key)})", notes)
    return common.EXIT_OK


def _create(args: argparse.Namespace) -> int:
    from cdc_generator import manage
    from cdc_generator.errors import UsageError

    path = manage.service_path(args.root, args.create)
    if path.exists():
        raise UsageError(f"services/{path.name} already exists; use --service {args.create}")
    groups = manage.load_groups(args.root)
    group = next((g for g in groups if g.name == args.server_group), None)
    if group is None:
        known = [g.name for g in groups]
        raise UsageError(f"unknown server group {args.server_group!r}; "
                         f"{manage.suggest(args.server_group, known)}")
    database = _database(group, args.create, args.customer)
    table, notes = _new_table(args, group, database)
    manage.write_atomic(path, manage.new_service_text(args.create, group.name, table))
    _done(f"services/{path.name}", f"created with table {table.name}", notes)
    return common.EXIT_OK


def _done(shown: str, what: str, notes: list[str]) -> None:
    for note in notes:
        sys.stderr.write(f"note: {note}\n")
    sys.stderr.write(f"{shown}: {what}; run `cdc-generator generate`\n")


def _database(group: ServerGroup, service: str, customer: str | None) -> Database:
    from cdc_generator.db.connection import pick_databases
    from cdc_generator.errors import UsageError

    databases = pick_databases(group, service, customer)
    if not databases:
        raise UsageError(f"server group {group.name!r} has no database for service {service!r}: "
                         f"add one with 'service: {service}' to server-groups.yaml first")
    return databases[0]


def _target(args: argparse.Namespace, group: ServerGroup, database: Database) -> Target:
    from cdc_generator.db import connection

    if args.dsn:
        dbname = database.name_in(args.environment) if args.environment else database.name
        return connection.target_from_dsn(args.dsn, dbname, database.customer)
    return connection.target_for(group, database, args.environment)


def _new_table(args: argparse.Namespace, group: ServerGroup,
               database: Database) -> tuple[NewTable, list[str]]:
    from cdc_generator import manage
    from cdc_generator.db.connection import connect
    from cdc_generator.db.inspect import inspect_tables
    from cdc_generator.errors import UsageError

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


def _inspect(args: argparse.Namespace, service: Service, group: ServerGroup,
             database: Database) -> int:
    from cdc_generator import manage
    from cdc_generator.db.connection import connect
    from cdc_generator.db.inspect import inspect_tables

    target = _target(args, group, database)
    schemas = database.schemas_for(args.schema)
    with connect(target) as conn:
        rows = manage.inspection(service, database, inspect_tables(conn, schemas))
    if args.format == "json":
        sys.stdout.write(json.dumps({
            "version": 1, "command": "manage-service --inspect", "service": service.name,
            "database": target.dbname, "schemas": schemas,
            "tables": [r.as_dict() for r in rows]}, indent=2) + "\n")
        return common.EXIT_OK
    sys.stdout.write(manage.inspection_text(rows, target.describe()))
    return common.EXIT_OK

"""Is the live source ready for a service's connectors? A list of check records.

Server-wide checks (wal_level, slot and sender headroom, the replication
privilege, existing slots) run once per server; table and publication checks
once per source database. Every failed check carries the SQL that fixes it.
Each database costs a constant number of catalog queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdc_generator import rowfilter
from cdc_generator.db.check import FAIL, PASS, ROW_FILTER_VERSION, WARN, Check
from cdc_generator.db.connection import Target, connect
from cdc_generator.db.inspect import TableInfo, inspect_tables
from cdc_generator.db.live import OUR_PREFIX
from cdc_generator.db.publication_check import publication_checks
from cdc_generator.plan import CapturedTable, Pipeline
from cdc_generator.publication import ident, literal

if TYPE_CHECKING:
    import psycopg

MANAGED_REPLICATION_ROLES = ("rds_replication", "azure_pg_admin", "cloudsqlsuperuser",
                             "alloydbsuperuser")
RETAINED_WAL_WARN = 1 << 30  # an inactive slot holding more than this is worth a look
RESTART = "-- then restart PostgreSQL (a managed service: change its parameter group instead)"


@dataclass(frozen=True)
class Source:
    """One pipeline and where its database is."""

    pipeline: Pipeline
    target: Target
    # tables the service lists without a schema (one entry for every schema)
    unscoped: frozenset[str] = frozenset()


def run(sources: Sequence[Source], configured_slots: frozenset[str] = frozenset()
        ) -> list[Check]:
    """Every check for `sources` (one service and environment), server checks first."""
    checks: list[Check] = []
    done: set[tuple[str, str, str]] = set()
    for source in sources:
        t = source.target
        key = (t.host, t.port, t.user)
        on_server = [s.pipeline for s in sources
                     if (s.target.host, s.target.port, s.target.user) == key]
        with connect(t) as conn:
            if key not in done:
                done.add(key)
                checks.extend(server_checks(conn, t, on_server))
            checks.extend(database_checks(conn, source))
    return checks


# ---------------------------------------------------------------- server-wide

_SERVER_SQL = """
SELECT current_setting('server_version_num')::int,
       current_setting('server_version'),
       current_setting('wal_level'),
       current_setting('max_replication_slots')::int,
       current_setting('max_wal_senders')::int,
       r.rolsuper, r.rolreplication, r.rolbypassrls, current_user::text,
       ARRAY(SELECT g.rolname::text FROM pg_roles g
              WHERE g.rolname = ANY(%(managed)s) AND pg_has_role(current_user, g.oid, 'MEMBER')),
       (SELECT count(*) FROM pg_stat_replication)::int
  FROM pg_roles r WHERE r.rolname = current_user
"""

_SLOTS_SQL = """
SELECT slot_name::text, coalesce(plugin::text, ''), slot_type, coalesce(database::text, ''),
       active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint
  FROM pg_replication_slots ORDER BY slot_name
"""


def server_checks(conn: psycopg.Connection[Any], target: Target,
                  pipelines: Sequence[Pipeline],
                  configured_slots: frozenset[str] = frozenset()) -> list[Check]:
    row = conn.execute(_SERVER_SQL, {"managed": list(MANAGED_REPLICATION_ROLES)}).fetchone()
    assert row is not None
    (version_num, version, wal_level, max_slots, max_senders, superuser, replication,
     bypassrls, user, managed, senders) = row
    slots = conn.execute(_SLOTS_SQL).fetchall()
    where = target.dbname
    out = [Check("server_version", PASS, f"PostgreSQL {version}", database=where)]

    if wal_level == "logical":
        out.append(Check("wal_level", PASS, "wal_level is logical", database=where))
    else:
        out.append(Check(
            "wal_level", FAIL, f"wal_level is {wal_level}; logical decoding needs 'logical'",
            f"ALTER SYSTEM SET wal_level = logical;\n{RESTART}", where))

    if superuser or replication or managed:
        how = ("superuser" if superuser else "REPLICATION" if replication
               else "member of " + ", ".join(managed))
        out.append(Check("replication_role", PASS, f"role {user!r} may replicate ({how})",
                         database=where))
    else:
        out.append(Check(
            "replication_role", FAIL,
            f"role {user!r} has neither REPLICATION nor superuser nor a managed-cloud "
            "replication role", f"ALTER ROLE {ident(user)} WITH REPLICATION;\n"
            f"-- on Amazon RDS instead: GRANT rds_replication TO {ident(user)};", where))

    if any(p.isolation == "rls" for p in pipelines):
        # logical decoding ignores row-level security, but the initial snapshot is
        # a plain SELECT: without BYPASSRLS it would silently copy only the rows the
        # policies let this role see
        if superuser or bypassrls:
            out.append(Check("bypass_rls", PASS, f"role {user!r} bypasses row-level "
                             "security, so the snapshot sees every tenant", database=where))
        else:
            out.append(Check(
                "bypass_rls", FAIL,
                f"role {user!r} is subject to row-level security: the snapshot would copy "
                "only the rows its policies allow", f"ALTER ROLE {ident(user)} BYPASSRLS;",
                where))

    existing = {str(s[0]): s for s in slots}
    wanted = [p.source.slot_name for p in pipelines]
    new_slots = [s for s in wanted if s not in existing]
    out.append(_headroom("max_replication_slots", "slots", len(slots), len(new_slots),
                         max_slots, where=where))
    idle = [s for s in wanted if s not in existing or not existing[s][4]]
    out.append(_headroom("max_wal_senders", "WAL senders", senders, len(idle),
                         max_senders, where=where))
    out.extend(_slot_checks(slots, pipelines, where, configured_slots))
    if version_num < ROW_FILTER_VERSION and any(p.source.filtered_tables for p in pipelines):
        out.append(Check(
            "row_filter_version", FAIL,
            f"row filters need PostgreSQL 15 or later; the server runs {version}",
            "-- upgrade the server, or remove 'filter:' from the service's tables", where))
    return out


def _headroom(setting: str, what: str, used: int, more: int, limit: int, *,
              where: str) -> Check:
    """Whether `more` of `what` fit under `setting` (= `limit`) beside `used`."""
    if used + more <= limit:
        return Check(setting, PASS, f"{used} of {limit} {what} in use, {more} more needed",
                     database=where)
    return Check(setting, FAIL, f"{used} of {limit} {what} in use and {more} more needed",
                 f"ALTER SYSTEM SET {setting} = {used + more + 2};\n{RESTART}", where)


def _slot_checks(slots: Sequence[Any], pipelines: Sequence[Pipeline], where: str,
                 configured: frozenset[str]) -> list[Check]:
    out = []
    ours = {p.source.slot_name: p for p in pipelines}
    environment = pipelines[0].environment if pipelines else "<environment>"
    for name, plugin, kind, database, active, retained in slots:
        size = _size(retained)
        if name not in ours and name.startswith(OUR_PREFIX) and name not in configured:
            out.append(Check(
                "orphaned_slot", WARN,
                f"slot {name!r} on database {database or '-'} looks like one of ours, but no "
                f"configured pipeline uses it ({'active' if active else 'inactive'}); it "
                f"retains {size} of WAL",
                f"SELECT pg_drop_replication_slot({literal(name)});\n"
                "-- or, with its publication and control tables:\n"
                f"-- cdc-generator apply --environment {environment} --prune",
                where, None, name))
            continue
        if name not in ours:
            out.append(Check("replication_slot", PASS,
                             f"other slot {name!r} ({'active' if active else 'inactive'}) "
                             f"retains {size} of WAL", database=where, subject=name))
            continue
        p = ours[name]
        drop = f"SELECT pg_drop_replication_slot({literal(name)});"
        if kind != "logical" or plugin != "pgoutput" or database != p.source.database:
            out.append(Check(
                "replication_slot", FAIL,
                f"slot {name!r} exists but is {kind}/{plugin or '-'} on database "
                f"{database or '-'}, not logical/pgoutput on {p.source.database}",
                drop, where, p.customer, name))
        elif not active and retained is not None and retained > RETAINED_WAL_WARN:
            out.append(Check(
                "replication_slot", WARN,
                f"slot {name!r} is inactive and retains {size} of WAL",
                f"-- start connector {p.source.name}, or if it is gone:\n{drop}",
                where, p.customer, name))
        else:
            out.append(Check("replication_slot", PASS,
                             f"slot {name!r} exists ({'active' if active else 'inactive'}), "
                             f"retains {size} of WAL", database=where, customer=p.customer,
                             subject=name))
    return out


def _size(retained: int | None) -> str:
    if retained is None:
        return "no"
    value = float(retained)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


# ---------------------------------------------------------------- per database


def database_checks(conn: psycopg.Connection[Any], source: Source) -> list[Check]:
    p = source.pipeline
    schemas = sorted({t.schema for t in p.source.tables})
    found = {(t.schema, t.name): t for t in inspect_tables(
        conn, schemas, {t.name for t in p.source.tables})}
    out: list[Check] = []
    for table in p.source.tables:
        info = found.get((table.schema, table.name))
        out.extend(_table_checks(source, table, info))
    out.extend(publication_checks(conn, p))
    return out


def _table_checks(source: Source, table: CapturedTable, info: TableInfo | None) -> list[Check]:
    p, user = source.pipeline, source.target.user
    db, who, name = p.source.database, p.customer, table.qualified
    qualified = f"{ident(table.schema)}.{ident(table.name)}"

    def check(check_id: str, status: str, message: str, fix: str = "") -> Check:
        return Check(check_id, status, message, fix, db, who, name)

    if info is None:
        remove = f"cdc-generator manage-service --service {p.service} --remove-table {table.name}"
        if table.name in source.unscoped:  # its entry covers every schema
            remove += "\n--   (its entry has no schema: this stops capturing it from all)"
        else:
            remove += f" --schema {table.schema}"
        return [check("table_exists", FAIL, f"table {name} does not exist in {db}",
                      f"-- create {qualified} in database {db}, or stop capturing it:\n"
                      f"-- {remove}")]
    out = [check("table_exists", PASS, f"table {name} exists")]
    if info.can_select:
        out.append(check("select_privilege", PASS, f"SELECT on {name} granted"))
    else:
        out.append(check("select_privilege", FAIL, f"the role cannot SELECT from {name} "
                         "(needed for the initial snapshot)",
                         f"GRANT USAGE ON SCHEMA {ident(table.schema)} TO {ident(user)};\n"
                         f"GRANT SELECT ON {qualified} TO {ident(user)};"))
    if info.replicable:
        out.append(check("replica_identity", PASS,
                         f"{name} has replica identity {info.replica_identity} "
                         f"({', '.join(info.identity_columns)})"))
    else:
        missing_pk = not info.primary_key and table.primary_key and all(
            c in info.columns for c in table.primary_key)
        fix = (f"ALTER TABLE {qualified} ADD PRIMARY KEY "
               f"({', '.join(ident(c) for c in table.primary_key)});\n-- or: "
               if missing_pk else "")
        fix += f"ALTER TABLE {qualified} REPLICA IDENTITY FULL;"
        out.append(check(
            "replica_identity", FAIL,
            f"{name} has no primary key and replica identity {info.replica_identity}: "
            "UPDATE and DELETE cannot be captured", fix))
    out.extend(_key_checks(check, table, info, qualified))
    out.extend(_numeric_checks(check, info, qualified))
    if table.filter:
        out.extend(_filter_checks(check, table, info, qualified))
    return out


def _key_checks(check: Any, table: CapturedTable, info: TableInfo,
                qualified: str) -> list[Check]:
    """The configured primary key: in the table, and in its replica identity."""
    name = table.qualified
    unknown = [c for c in table.primary_key if c not in info.columns]
    if unknown:
        return [check("primary_key", FAIL,
                      f"configured primary_key column(s) {', '.join(unknown)} not in {name}",
                      "-- fix primary_key in the service file")]
    if info.replicable and not set(table.primary_key) <= set(info.identity_columns):
        # Debezium builds a DELETE's key from the old-row image, which holds only the
        # replica identity: key columns outside it arrive empty and the sink would
        # delete the wrong row, or none
        outside = [c for c in table.primary_key if c not in info.identity_columns]
        return [check(
            "key_in_replica_identity", FAIL,
            f"configured primary_key column(s) {', '.join(outside)} of {name} are not in its "
            f"replica identity ({', '.join(info.identity_columns)}): DELETE events would "
            "carry empty keys",
            f"ALTER TABLE {qualified} REPLICA IDENTITY FULL;\n"
            "-- or, lighter on WAL, a unique index over the key as replica identity:\n"
            f"-- CREATE UNIQUE INDEX <index> ON {qualified} "
            f"({', '.join(ident(c) for c in table.primary_key)});\n"
            f"-- ALTER TABLE {qualified} REPLICA IDENTITY USING INDEX <index>;")]
    if info.primary_key and tuple(info.primary_key) != tuple(table.primary_key):
        return [check("primary_key", WARN,
                      f"configured primary_key ({', '.join(table.primary_key)}) differs from "
                      f"the table's ({', '.join(info.primary_key)})",
                      "-- the record key uses the configured columns: make sure they are "
                      "unique, or fix primary_key in the service file")]
    return []


def _numeric_checks(check: Any, info: TableInfo, qualified: str) -> list[Check]:
    """numeric without precision: the JDBC sink would create double precision."""
    if not info.unconstrained_numeric:
        return []
    columns = ", ".join(c for c, _kind in info.unconstrained_numeric)
    return [check(
        "exact_numeric", WARN,
        f"{info.qualified} has numeric column(s) without precision ({columns}): the JDBC "
        "sink would create them as double precision, rounding values past 15 significant "
        "digits",
        "\n".join(f"ALTER TABLE {qualified} ALTER COLUMN {ident(c)} TYPE "
                  f"numeric(38, 10){'[]' if kind.endswith('[]') else ''};"
                  for c, kind in info.unconstrained_numeric)
        + "\n-- (choose the precision and scale the data needs), or create the target "
          "table in the sink database\n-- before the sink starts, with these columns "
          "as numeric: the sink then writes them exactly\n-- and adds the other "
          "columns itself")]


def _filter_checks(check: Any, table: CapturedTable, info: TableInfo,
                   qualified: str) -> list[Check]:
    name = table.qualified
    assert table.filter is not None
    try:
        rowfilter.canonical(table.filter, info.columns)
    except rowfilter.RowFilterError as exc:
        hint = f" ({exc.hint})" if exc.hint else ""
        return [check("row_filter", FAIL, f"filter on {name}: {exc}{hint}",
                      "-- fix 'filter:' in the service file")]
    used = rowfilter.referenced_columns(table.filter)
    uncovered = sorted(used - set(info.identity_columns))
    if uncovered:
        return [check(
            "row_filter", FAIL,
            f"filter on {name} reads {', '.join(uncovered)}, outside the replica identity "
            f"({', '.join(info.identity_columns) or 'none'}): PostgreSQL would reject "
            "UPDATE and DELETE on the table once it is published",
            f"ALTER TABLE {qualified} REPLICA IDENTITY FULL;")]
    return [check("row_filter", PASS, f"filter on {name} reads replica-identity columns only")]


# ---------------------------------------------------------------- reporting


def failed(checks: Sequence[Check]) -> bool:
    return any(c.failed for c in checks)

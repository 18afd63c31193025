"""What a source server and database hold for our connectors: publications and their
members, the control tables and their ledger, replication slots. Read-only, a fixed
number of catalog queries per database.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cdc_generator import control

if TYPE_CHECKING:
    import psycopg

#: our replication slots and publications: cdc_<service>[_<customer>]_<env> (names.py)
OUR_PREFIX = "cdc_"


@dataclass(frozen=True)
class Member:
    """One table of a publication (a row of pg_publication_rel)."""

    schema: str
    table: str
    oid: int  # new each time the table joins (or its row filter changes)
    row_filter: str | None  # as PostgreSQL prints it (pg_get_expr)

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.table}"


@dataclass(frozen=True)
class Slot:
    name: str
    database: str
    plugin: str
    active: bool
    retained_bytes: int | None  # WAL the server keeps for it; None when unknown
    confirmed_flush_lsn: str | None


@dataclass(frozen=True)
class SourceState:
    """One connector's objects in its source database."""

    publication: bool
    members: tuple[Member, ...]
    publish: str  # the publication's operations, e.g. "insert, update, delete, truncate"
    control_tables: frozenset[str]  # which of the connector's control tables exist
    ledger: frozenset[str]  # signal ids already in its signal table
    slot: Slot | None

    def member(self, qualified: str) -> Member | None:
        for m in self.members:
            if m.qualified == qualified:
                return m
        return None

    def recorded(self, member: Member) -> bool:
        """Whether the ledger says this membership was backfilled or needed none."""
        return bool({control.backfill_id(member.oid), control.covered_id(member.oid)}
                    & self.ledger)


_PUBLICATION_SQL = """
SELECT p.oid, array_to_string(ARRAY[
         CASE WHEN p.pubinsert THEN 'insert' END, CASE WHEN p.pubupdate THEN 'update' END,
         CASE WHEN p.pubdelete THEN 'delete' END, CASE WHEN p.pubtruncate THEN 'truncate' END],
         ', ')
  FROM pg_publication p WHERE p.pubname = %s
"""

_MEMBERS_SQL = """
SELECT n.nspname::text, c.relname::text, pr.oid::bigint, pg_get_expr(pr.prqual, pr.prrelid)
  FROM pg_publication_rel pr
  JOIN pg_class c ON c.oid = pr.prrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE pr.prpubid = %s
 ORDER BY n.nspname, c.relname
"""

_TABLES_SQL = """
SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'
"""

SLOTS_SQL = """
SELECT slot_name::text, coalesce(database::text, ''), coalesce(plugin::text, ''), active,
       pg_wal_lsn_diff(CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn()
                            ELSE pg_current_wal_lsn() END, restart_lsn)::bigint,
       confirmed_flush_lsn::text
  FROM pg_replication_slots ORDER BY slot_name
"""


def slots(conn: psycopg.Connection[Any]) -> list[Slot]:
    """Every replication slot on the server."""
    return [Slot(str(name), str(db), str(plugin), bool(active),
                 None if retained is None else int(retained), lsn)
            for name, db, plugin, active, retained, lsn in conn.execute(SLOTS_SQL).fetchall()]


def source_state(conn: psycopg.Connection[Any], *, publication: str, slot: str,
                 ctl: control.Control, server_slots: Collection[Slot] | None = None
                 ) -> SourceState:
    """The objects of the connector that uses `publication`, `slot` and `ctl`."""
    row = conn.execute(_PUBLICATION_SQL, (publication,)).fetchone()
    members: tuple[Member, ...] = ()
    publish = ""
    if row is not None:
        pub_oid, publish = row
        members = tuple(Member(s, t, int(oid), expr) for s, t, oid, expr in
                        conn.execute(_MEMBERS_SQL, (pub_oid,)).fetchall())
    found = {str(r[0]) for r in conn.execute(_TABLES_SQL, (control.SCHEMA,
                                                           list(ctl.tables))).fetchall()}
    ledger: frozenset[str] = frozenset()
    if ctl.signal_table in found:
        ledger = frozenset(str(r[0]) for r in conn.execute(
            f"SELECT id FROM {control.ident(control.SCHEMA)}.{control.ident(ctl.signal_table)} "
            "WHERE id LIKE 'cdc-%%'").fetchall())
    all_slots = slots(conn) if server_slots is None else server_slots
    mine = next((s for s in all_slots if s.name == slot), None)
    return SourceState(row is not None, members, str(publish or ""), frozenset(found),
                       ledger, mine)

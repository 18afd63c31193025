"""The control objects each source database holds for its connector (pure: names and SQL).

Every generated source has, in schema ``cdc`` of its database:

* a **signal table** (``signal.data.collection``): Debezium reads the rows inserted
  into it from the replication stream and acts on them. ``cdc-generator apply``
  writes two kinds: ``execute-snapshot`` (type ``incremental``) to backfill a table
  added to a running pipeline, and ``log`` (a no-op that Debezium only logs) to
  record that a table needed none. Together they are the ledger of which
  publication memberships have been taken care of: a membership is one row of
  ``pg_publication_rel``, whose OID is new each time a table joins the publication
  (or its row filter changes), so a signal id made from it is written at most once
  for one change however often ``apply`` runs;
* a **heartbeat table**, written by ``heartbeat.action.query`` every heartbeat
  interval, so that a quiet database on a busy server has changes to stream and its
  slot's confirmed position keeps moving (otherwise the slot holds the server's
  WAL back).

Both tables are part of the connector's publication and ``table.include.list``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from cdc_generator import names

SCHEMA = "cdc"
SIGNAL_KIND, HEARTBEAT_KIND = "signal", "heartbeat"
#: Debezium reads a signal row's id, type and data by position; ids up to 42 characters
SIGNAL_ID_MAX = 42
BACKFILL_PREFIX, COVERED_PREFIX = "cdc-backfill-", "cdc-covered-"


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class Control:
    """The control tables of one source connector (named after its slot)."""

    signal_table: str  # table name in SCHEMA
    heartbeat_table: str

    @classmethod
    def of(cls, slot: str) -> Control:
        stem = slot.removeprefix("cdc_")  # the schema says cdc already
        return cls(names.bounded_identifier(f"{stem}_{SIGNAL_KIND}"),
                   names.bounded_identifier(f"{stem}_{HEARTBEAT_KIND}"))

    @property
    def signal_qualified(self) -> str:
        """``cdc.<table>``, as Debezium's signal.data.collection names it."""
        return f"{SCHEMA}.{self.signal_table}"

    @property
    def heartbeat_qualified(self) -> str:
        return f"{SCHEMA}.{self.heartbeat_table}"

    @property
    def tables(self) -> tuple[str, str]:
        return (self.signal_table, self.heartbeat_table)

    def heartbeat_query(self) -> str:
        """Debezium's heartbeat.action.query: one row, rewritten every heartbeat."""
        return (f"INSERT INTO {ident(SCHEMA)}.{ident(self.heartbeat_table)} (id, beat) "
                "VALUES (1, now()) ON CONFLICT (id) DO UPDATE SET beat = EXCLUDED.beat")

    def create_statements(self) -> list[str]:
        """Idempotent DDL of the schema and both tables."""
        signal = f"{ident(SCHEMA)}.{ident(self.signal_table)}"
        heartbeat = f"{ident(SCHEMA)}.{ident(self.heartbeat_table)}"
        return [
            f"CREATE SCHEMA IF NOT EXISTS {ident(SCHEMA)}",
            f"CREATE TABLE IF NOT EXISTS {signal} (id varchar({SIGNAL_ID_MAX}) PRIMARY KEY, "
            "type varchar(32) NOT NULL, data text)",
            f"CREATE TABLE IF NOT EXISTS {heartbeat} (id int PRIMARY KEY, "
            "beat timestamptz NOT NULL)",
        ]


def backfill_id(membership_oid: int) -> str:
    return f"{BACKFILL_PREFIX}{membership_oid}"


def covered_id(membership_oid: int) -> str:
    return f"{COVERED_PREFIX}{membership_oid}"


def backfill_signal(control: Control, membership_oid: int, qualified_table: str,
                    row_filter: str | None) -> str:
    """The INSERT that asks the running connector for an incremental snapshot of one
    table (only the rows `row_filter` keeps); a second run inserts nothing."""
    data: dict[str, object] = {"data-collections": [qualified_table], "type": "incremental"}
    if row_filter:
        data["additional-conditions"] = [{"data-collection": qualified_table,
                                          "filter": row_filter}]
    return _signal_insert(control, backfill_id(membership_oid), "execute-snapshot", data)


def covered_signal(control: Control, membership_oid: int, qualified_table: str,
                   why: str) -> str:
    """The INSERT that records a membership that needs no backfill (Debezium logs it)."""
    return _signal_insert(control, covered_id(membership_oid), "log",
                          {"message": f"cdc-generator: {qualified_table}: {why}"})


def _signal_insert(control: Control, signal_id: str, kind: str, data: dict[str, object]) -> str:
    payload = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)
    return (f"INSERT INTO {ident(SCHEMA)}.{ident(control.signal_table)} (id, type, data) "
            f"VALUES ({literal(signal_id)}, {literal(kind)}, {literal(payload)}) "
            "ON CONFLICT (id) DO NOTHING")

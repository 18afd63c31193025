"""What must change on the live source servers to match the config: a list of actions.

Pure: the plan's pipelines and the live state (db/live.py) in, :class:`Action`s out,
each with the SQL that performs it. The order within a connector loses no change:
control tables, then the publication, then the ledger (memberships that need no
backfill), then the backfills (which `apply` sends only once the connector runs with
the new table list). Cleanup of what no configured pipeline owns comes last.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from cdc_generator import control, publication, rowfilter
from cdc_generator.db.live import OUR_PREFIX, Slot, SourceState
from cdc_generator.plan import Pipeline

CREATE_CONTROL = "create-control-tables"
CREATE_PUBLICATION = "create-publication"
ALTER_PUBLICATION = "alter-publication"
RECORD_COVERED = "record-covered"
BACKFILL = "backfill-table"
DROP_PUBLICATION = "drop-publication"
DROP_CONTROL = "drop-control-tables"
DROP_SLOT = "drop-slot"
#: actions that delete something: `apply` performs them only with --prune
DESTRUCTIVE = frozenset({DROP_PUBLICATION, DROP_CONTROL, DROP_SLOT})
#: how a drop's note starts while a connector still uses what it would drop
ACTIVE = "ACTIVE"


@dataclass(frozen=True)
class Action:
    action: str  # a kebab-case verb and object
    environment: str
    database: str
    connector: str  # the source connector concerned ("" for an orphan)
    object: str  # the table, publication or slot
    sql: str
    note: str = ""  # why, or what to look out for
    customer: str | None = None
    rows: int | None = None  # a backfill's table size (planner's estimate)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def desired_members(pipeline: Pipeline) -> list[tuple[str, str | None]]:
    """(schema.table, row filter) the connector's publication must hold."""
    ctl = control.Control.of(pipeline.source.slot_name)
    return [*((t.qualified, t.filter) for t in pipeline.source.tables),
            (ctl.signal_qualified, None), (ctl.heartbeat_qualified, None)]


def source_actions(pipeline: Pipeline, state: SourceState,
                   estimates: dict[str, int] | None = None) -> list[Action]:
    """Everything the connector of `pipeline` needs in its database."""
    src = pipeline.source
    ctl = control.Control.of(src.slot_name)

    def action(kind: str, obj: str, sql: str, note: str = "", rows: int | None = None) -> Action:
        return Action(kind, pipeline.environment, src.database, src.name, obj, sql, note,
                      pipeline.customer, rows)

    out: list[Action] = []
    missing = [t for t in ctl.tables if t not in state.control_tables]
    if missing:
        out.append(action(CREATE_CONTROL, ", ".join(f"{control.SCHEMA}.{t}" for t in missing),
                          ";\n".join(ctl.create_statements()) + ";",
                          "the signal table carries backfill requests; the heartbeat table "
                          "keeps the slot moving when the database is quiet"))
    want = desired_members(pipeline)
    # the one statement creates the publication or resets its tables (keeping the rows
    # of unchanged members): safe to run again, whoever runs it
    if not state.publication:
        out.append(action(CREATE_PUBLICATION, src.publication_name,
                          publication.statement(src), "before the connector starts"))
    elif not _same_members(want, state) or state.publish != publication.PUBLISH:
        out.append(action(ALTER_PUBLICATION, src.publication_name,
                          publication.statement(src), _member_change(want, state)))
    # Memberships without a ledger row: the initial snapshot covers them while the
    # connector has never run (no slot yet), and when the ledger is new (a pipeline
    # from before it: streamed all along); otherwise they joined a running pipeline.
    fresh = state.slot is None or ctl.signal_table not in state.control_tables
    for qualified, row_filter in want[:-2]:
        member = state.member(qualified)
        # a membership whose filter changes is replaced (a new pg_publication_rel row)
        existed = member is not None and _same_filter(member.row_filter, row_filter)
        if existed and state.recorded(member):  # type: ignore[arg-type]
            continue
        if fresh and (existed or state.slot is None):
            why = "no slot yet: the initial snapshot reads it" if state.slot is None \
                else "captured before the ledger existed"
            out.append(action(RECORD_COVERED, qualified,
                              _ledger_sql(ctl, src.publication_name, qualified, row_filter,
                                          covered=why), why))
        else:
            rows = (estimates or {}).get(qualified)
            out.append(action(BACKFILL, qualified,
                              _ledger_sql(ctl, src.publication_name, qualified, row_filter),
                              "an incremental snapshot of its existing rows"
                              + (f" ({row_filter})" if row_filter else "")
                              + "; sent once the connector runs with it", rows))
    return out


def orphan_actions(environment: str, configured: Iterable[Pipeline], slots: Sequence[Slot],
                   publications: dict[str, list[str]], prefix: str = OUR_PREFIX
                   ) -> list[Action]:
    """Slots, publications and control tables that look like ours (`prefix`: cdc_, or one
    service's cdc_<service>_) but that no configured pipeline, of any environment, uses.
    `publications`: database -> names. A connector still reading (its slot is active)
    uses them: the drops say so, and `apply` keeps them."""
    pipelines = list(configured)
    used = {p.source.slot_name for p in pipelines}
    active = {s.name for s in slots if s.active}
    out: list[Action] = []
    for db, names in sorted(publications.items()):
        for name in sorted(names):
            if name.startswith(prefix) and name not in used:
                ctl = control.Control.of(name)
                why = (f"{ACTIVE}: slot {name} is still read; delete its KafkaConnector first"
                       if name in active else "no configured pipeline uses it")
                out.append(Action(DROP_PUBLICATION, environment, db, "", name,
                                  f"DROP PUBLICATION IF EXISTS {control.ident(name)};", why))
                out.append(Action(DROP_CONTROL, environment, db, "",
                                  f"{ctl.signal_qualified}, {ctl.heartbeat_qualified}",
                                  ";\n".join(f"DROP TABLE IF EXISTS "
                                             f"{control.ident(control.SCHEMA)}."
                                             f"{control.ident(t)}" for t in ctl.tables) + ";",
                                  why if name in active
                                  else "the control tables of that publication's connector"))
    for slot in slots:
        if slot.name.startswith(prefix) and slot.name not in used:
            held = ("" if slot.retained_bytes is None
                    else f"; it holds {_size(slot.retained_bytes)} of WAL")
            note = (f"{ACTIVE}: its connector still runs; delete the KafkaConnector first"
                    if slot.active else "no configured pipeline uses it") + held
            out.append(Action(DROP_SLOT, environment, slot.database, "", slot.name,
                              f"SELECT pg_drop_replication_slot({control.literal(slot.name)});",
                              note, rows=slot.retained_bytes))
    return out


def _same_members(want: list[tuple[str, str | None]], state: SourceState) -> bool:
    if {q for q, _f in want} != {m.qualified for m in state.members}:
        return False
    return all(_same_filter(state.member(q).row_filter, f)  # type: ignore[union-attr]
               for q, f in want)


def _same_filter(stored: str | None, ours: str | None) -> bool:
    if stored is None or ours is None:
        return stored is None and ours is None
    return rowfilter.equivalent(ours, stored)


def _member_change(want: list[tuple[str, str | None]], state: SourceState) -> str:
    have = {m.qualified for m in state.members}
    wanted = {q for q, _ in want}
    parts = []
    if wanted - have:
        parts.append("adds " + ", ".join(sorted(wanted - have)))
    if have - wanted:
        parts.append("removes " + ", ".join(sorted(have - wanted)))
    changed = [q for q, f in want if q in have and not _same_filter(
        state.member(q).row_filter, f)]  # type: ignore[union-attr]
    if changed:
        parts.append("changes the row filter of " + ", ".join(changed))
    if state.publish != publication.PUBLISH:
        parts.append(f"publishes {publication.PUBLISH} (was {state.publish or 'nothing'})")
    return "; ".join(parts)


def _ledger_sql(ctl: control.Control, pub: str, qualified: str, row_filter: str | None, *,
                covered: str | None = None) -> str:
    """The INSERT of one membership's ledger row, its id taken from pg_publication_rel at
    the time it runs (so it is correct after the publication change before it, and a
    second run inserts nothing): a backfill signal, or a `log` row when covered."""
    if covered is None:
        prefix, kind = control.BACKFILL_PREFIX, "execute-snapshot"
        data: dict[str, object] = {"data-collections": [qualified], "type": "incremental"}
        if row_filter:
            data["additional-conditions"] = [{"data-collection": qualified,
                                              "filter": row_filter}]
    else:
        prefix, kind = control.COVERED_PREFIX, "log"
        data = {"message": f"cdc-generator: {qualified}: {covered}"}
    payload = json.dumps(data, separators=(", ", ": "), ensure_ascii=False)
    schema, table = qualified.split(".", 1)
    return (f"INSERT INTO {control.ident(control.SCHEMA)}.{control.ident(ctl.signal_table)} "
            f"(id, type, data)\nSELECT {control.literal(prefix)} || pr.oid, "
            f"{control.literal(kind)}, {control.literal(payload)}\n"
            "  FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid\n"
            f" WHERE p.pubname = {control.literal(pub)} AND pr.prrelid = "
            f"{control.literal(control.ident(schema) + '.' + control.ident(table))}::regclass\n"
            "ON CONFLICT (id) DO NOTHING;")


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n //= 1024
    return f"{n} TB"

"""`plan` and `apply`: compare the live source servers (and, optionally, the Kafka
Connect cluster) with the config, and bring them in line.

Reading (`gather`) connects to every source database of the environment once,
read-only, plus each server's slots; `changes.py` turns what it found into actions.
Applying runs each action's SQL in its database, in order, one transaction each:
control tables, publication, ledger; a backfill only once the connector runs with
the table in its include list (checked on the Connect cluster); the drops only with
`prune`. A role that may not change a database stops there with a located problem:
the plan's SQL is what to hand to a DBA.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cdc_generator import changes, control, names
from cdc_generator.changes import Action
from cdc_generator.config.model import Config
from cdc_generator.db import connection, live
from cdc_generator.errors import CdcError
from cdc_generator.plan import Pipeline, build_plan

if TYPE_CHECKING:
    import psycopg

_OURS_SQL = "SELECT pubname::text FROM pg_publication WHERE pubname LIKE 'cdc\\_%'"
_ESTIMATES_SQL = """
SELECT n.nspname || '.' || c.relname, greatest(c.reltuples, 0)::bigint
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname || '.' || c.relname = ANY(%s)
"""


@dataclass(frozen=True)
class ConnectorState:
    """What the Connect cluster runs under a connector's name."""

    running: bool
    include_list: str


@dataclass
class LivePlan:
    environment: str
    actions: list[Action] = field(default_factory=list)
    pipelines: list[Pipeline] = field(default_factory=list)
    #: connector name -> its state on the Connect cluster (only with a Connect URL)
    connectors: dict[str, ConnectorState] | None = None

    def waiting(self, action: Action) -> str | None:
        """Why a backfill cannot be sent yet, or None when it can."""
        if action.action != changes.BACKFILL:
            return None
        if self.connectors is None:
            return ("pass --connect-url, so that the backfill is sent only once the connector "
                    "runs with the table")
        state = self.connectors.get(action.connector)
        if state is None:
            return f"connector {action.connector} is not on the Kafka Connect cluster yet"
        if not state.running:
            return f"connector {action.connector} is not RUNNING"
        if not _included(action.object, state.include_list):
            return (f"connector {action.connector} does not capture {action.object} yet: "
                    "deploy the generated manifests first")
        return None


def gather(config: Config, environment: str, *, service: str | None = None,
           connect_url: str | None = None, dsn: str | None = None) -> LivePlan:
    """Every action the environment needs, read from its live source servers."""
    selected = list(build_plan(config, service=service, environment=environment).pipelines)
    everything = list(build_plan(config).pipelines)  # orphans: of no environment at all
    plan = LivePlan(environment, pipelines=selected)
    if connect_url is not None:
        plan.connectors = connector_states(connect_url)
    by_server: dict[tuple[str, str, str], list[tuple[Pipeline, connection.Target]]] = {}
    for p in selected:
        target = _target(config, p, dsn)
        by_server.setdefault((target.host, target.port, target.user), []).append((p, target))
    prefix = live.OUR_PREFIX if service is None else f"cdc_{names.sql_ident(service)}_"
    for on_server in by_server.values():
        plan.actions += _server_actions(environment, on_server, everything, prefix)
    return plan


def _target(config: Config, p: Pipeline, dsn: str | None) -> connection.Target:
    if dsn:
        return connection.target_from_dsn(dsn, p.source.database, p.customer)
    group = config.group(p.group)
    assert group is not None
    return connection.server_target(group, p.source.database, p.customer)


def _server_actions(environment: str, on_server: list[tuple[Pipeline, connection.Target]],
                    everything: list[Pipeline], prefix: str) -> list[Action]:
    out: list[Action] = []
    publications: dict[str, list[str]] = {}
    slots: list[live.Slot] = []
    for i, (p, target) in enumerate(on_server):
        with connection.connect(target) as conn:
            if i == 0:
                slots = live.slots(conn)
            state = live.source_state(conn, publication=p.source.publication_name,
                                      slot=p.source.slot_name,
                                      ctl=control.Control.of(p.source.slot_name),
                                      server_slots=slots)
            out += changes.source_actions(p, state, _estimates(conn, p))
            publications[target.dbname] = _ours(conn)
    # databases that only an orphaned slot names: look for its publication there too
    base = on_server[0][1]
    for db in sorted({s.database for s in slots if s.name.startswith(prefix)}
                     - set(publications)):
        try:
            with connection.connect(_retarget(base, db)) as conn:
                publications[db] = _ours(conn)
        except connection.DatabaseError:
            continue  # the slot is still reported; its publication may stay
    return out + changes.orphan_actions(environment, everything, slots, publications, prefix)


def _retarget(target: connection.Target, dbname: str) -> connection.Target:
    return connection.Target(target.host, target.port, target.user, dbname, target.password,
                             None, target.dsn)


def _ours(conn: psycopg.Connection[Any]) -> list[str]:
    return [str(r[0]) for r in conn.execute(_OURS_SQL).fetchall()]


def _estimates(conn: psycopg.Connection[Any], p: Pipeline) -> dict[str, int]:
    """The planner's row estimates of the captured tables (what a backfill reads)."""
    rows = conn.execute(_ESTIMATES_SQL, ([t.qualified for t in p.source.tables],)).fetchall()
    return {str(name): int(n) for name, n in rows}


def connector_states(connect_url: str) -> dict[str, ConnectorState]:
    """Every connector on the cluster: RUNNING (all of it) and its table.include.list."""
    from cdc_generator.connect import http_json, safe_url

    url = connect_url.rstrip("/") + "/connectors?expand=status&expand=info"
    status, body = http_json("GET", url, None, timeout=30)
    if status != 200 or not isinstance(body, dict):
        raise CdcError(f"Kafka Connect at {safe_url(connect_url)} answered HTTP {status} "
                       "to GET /connectors")
    out = {}
    for name, entry in body.items():
        info = entry.get("info") or {}
        state = entry.get("status") or {}
        states = [state.get("connector", {}).get("state"),
                  *(t.get("state") for t in state.get("tasks", []))]
        running = len(states) > 1 and all(s == "RUNNING" for s in states)
        config = info.get("config") or {}
        out[str(name)] = ConnectorState(running, str(config.get("table.include.list", "")))
    return out


def _included(qualified: str, include_list: str) -> bool:
    """Whether Debezium's table.include.list (regexes, matched whole) takes the table."""
    for pattern in filter(None, (p.strip() for p in include_list.split(","))):
        try:
            if re.fullmatch(pattern, qualified):
                return True
        except re.error:
            continue
    return False


# --------------------------------------------------------------------------- apply


@dataclass(frozen=True)
class Outcome:
    action: Action
    status: str  # done | waiting | skipped | refused
    why: str = ""


def apply(config: Config, plan: LivePlan, *, prune: bool, dsn: str | None = None
          ) -> list[Outcome]:
    """Perform the plan's actions in order; what became of each."""
    by_db: dict[tuple[str, str], list[Action]] = {}
    for a in plan.actions:
        by_db.setdefault((a.connector, a.database), []).append(a)
    targets = {p.source.name: _target(config, p, dsn) for p in plan.pipelines}
    base = next(iter(targets.values()), None)
    outcomes: list[Outcome] = []
    for (connector, db), actions in by_db.items():
        target = targets.get(connector) or (None if base is None else _retarget(base, db))
        if target is None:
            continue
        outcomes += _apply_in(target, actions, plan, prune=prune)
    return outcomes


def _apply_in(target: connection.Target, actions: Sequence[Action], plan: LivePlan, *,
              prune: bool) -> list[Outcome]:
    import psycopg

    out: list[Outcome] = []
    with connection.connect(target, read_only=False) as conn:
        for a in actions:
            why = plan.waiting(a)
            if why is not None:
                out.append(Outcome(a, "waiting", why))
                continue
            if a.action in changes.DESTRUCTIVE and not prune:
                out.append(Outcome(a, "skipped", "pass --prune to drop it"))
                continue
            if a.action in changes.DESTRUCTIVE and a.note.startswith(changes.ACTIVE):
                out.append(Outcome(a, "skipped", a.note))
                continue
            try:
                with conn.transaction():
                    conn.execute(a.sql.encode())
            except psycopg.errors.InsufficientPrivilege as exc:
                out.append(Outcome(a, "refused", f"{target.user} may not: "
                                   f"{target.redact(str(exc).strip().splitlines()[0])}"))
                break  # what follows builds on it
            out.append(Outcome(a, "done"))
    return out


# --------------------------------------------------------------------------- text


_SIGNS = {changes.CREATE_CONTROL: "+", changes.CREATE_PUBLICATION: "+",
          changes.ALTER_PUBLICATION: "~", changes.RECORD_COVERED: "+",
          changes.BACKFILL: ">", changes.DROP_PUBLICATION: "-", changes.DROP_CONTROL: "-",
          changes.DROP_SLOT: "-"}


def render(actions: Iterable[Action], *, title: str,
           outcomes: Sequence[Outcome] | None = None) -> str:
    """The plan for people, terraform-like: a sign, the action, where, why, its SQL."""
    done = {id(o.action): o for o in outcomes or ()}
    lines = [title]
    listed = list(actions)
    for a in listed:
        where = f"{a.database}" + (f" ({a.customer})" if a.customer else "")
        who = f" {a.connector}" if a.connector else ""
        size = f", ~{a.rows:,} rows" if a.rows and a.action == changes.BACKFILL else ""
        lines.append(f"{_SIGNS.get(a.action, '*')} {a.action} {a.object} [{where}{who}{size}]")
        if a.note:
            lines.append(f"    {a.note}")
        outcome = done.get(id(a))
        if outcome is not None:
            lines.append(f"    -> {outcome.status}" + (f": {outcome.why}" if outcome.why else ""))
        elif a.sql:
            lines.extend(f"    {line}" for line in a.sql.splitlines())
    if not listed:
        lines.append("nothing to do: the live databases match the config")
    return "\n".join(lines) + "\n"


def payload(actions: Iterable[Action], outcomes: Sequence[Outcome] | None = None
            ) -> dict[str, object]:
    done = {id(o.action): o for o in outcomes or ()}
    rows = []
    for a in actions:
        row = a.as_dict()
        if id(a) in done:
            row["status"] = done[id(a)].status
            if done[id(a)].why:
                row["why"] = done[id(a)].why
        rows.append(row)
    return {"actions": rows}

"""What merging a change will do, read from generated/ alone (no database): for a pull
request's job summary (`plan --since REF`).

Compares the KafkaConnectors committed at a git revision with the working tree's:
connectors added, changed and removed; tables a changed source captures now (each a
backfill, across every tenant that gains it); the slots a removed source leaves (to
drop with `apply --prune`). A backfill across many tenants is flagged as costly; how
large a table is needs the databases (`plan` against them gives row estimates).
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from cdc_generator import connect, control, layout
from cdc_generator.config.load import YamlLoadError, parse_document
from cdc_generator.errors import CdcError

SOURCE_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
#: a table added to this many connectors (tenants) or more is a costly backfill
MANY_TENANTS = 10


@dataclass(frozen=True)
class Manifest:
    environment: str
    name: str
    connector_class: str
    config: dict[str, str]

    @property
    def tables(self) -> set[str]:
        """The captured tables (the connector's own control tables left out)."""
        raw = self.config.get("table.include.list", "")
        return {t.replace("\\.", ".") for t in raw.split(",")
                if t and not t.startswith(f"{control.SCHEMA}\\.")}


@dataclass
class Review:
    since: str
    added: list[Manifest] = field(default_factory=list)
    removed: list[Manifest] = field(default_factory=list)
    changed: list[tuple[Manifest, Manifest]] = field(default_factory=list)
    #: (environment, table) -> connectors that capture it from now on
    backfills: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    #: (environment, slot, connector) a removed source leaves
    slots: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def costly(self) -> list[str]:
        return [f"{table} is backfilled in {len(c)} connectors ({env})"
                for (env, table), c in sorted(self.backfills.items()) if len(c) >= MANY_TENANTS]


def review(root: Path, since: str, environment: str | None = None) -> Review:
    old = _at_revision(root, since, environment)
    new = {(c.path.split("/")[3], c.name): _manifest(c.path.split("/")[3], c.connector_class,
                                                     c.name, c.config)
           for c in connect.load_generated(root, environment=environment)}
    out = Review(since)
    for key in sorted(new.keys() - old.keys()):
        out.added.append(new[key])
    for key in sorted(old.keys() - new.keys()):
        gone = old[key]
        out.removed.append(gone)
        if gone.connector_class == SOURCE_CLASS and gone.config.get("slot.name"):
            out.slots.append((gone.environment, gone.config["slot.name"], gone.name))
    backfills: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key in sorted(new.keys() & old.keys()):
        before, after = old[key], new[key]
        if before.config != after.config or before.connector_class != after.connector_class:
            out.changed.append((before, after))
            if after.connector_class == SOURCE_CLASS:
                for table in sorted(after.tables - before.tables):
                    backfills[after.environment, table].append(after.name)
    out.backfills = dict(backfills)
    return out


def _manifest(environment: str, cls: str, name: str, config: dict[str, str]) -> Manifest:
    return Manifest(environment, name, cls, config)


def _at_revision(root: Path, since: str, environment: str | None) -> dict[
        tuple[str, str], Manifest]:
    base = f"{layout.GENERATED_DIR}/{layout.PIPELINES}"
    listed = _git(root, "ls-tree", "-r", "--name-only", since, "--", base)
    out: dict[tuple[str, str], Manifest] = {}
    for path in listed.splitlines():
        parts = path.split("/")
        if len(parts) != 5 or not path.endswith(".yaml") or parts[-1] == layout.KUSTOMIZATION:
            continue
        env = parts[3]
        if environment is not None and env != environment:
            continue
        try:
            doc = parse_document(_git(root, "show", f"{since}:{path}"), path).data
        except YamlLoadError:
            continue  # not a manifest we wrote: nothing to compare it with
        if not isinstance(doc, dict) or doc.get("kind") != "KafkaConnector":
            continue
        spec = doc.get("spec") or {}
        config = {str(k): str(v).lower() if isinstance(v, bool) else str(v)
                  for k, v in (spec.get("config") or {}).items()}
        name = str((doc.get("metadata") or {}).get("name", ""))
        out[env, name] = Manifest(env, name, str(spec.get("class", "")), config)
    return out


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise CdcError(f"git {' '.join(args[:2])} failed: {done.stderr.strip()}",
                       "name a revision git knows (fetch the base branch: "
                       "actions/checkout with fetch-depth: 0)")
    return done.stdout


def markdown(r: Review) -> str:
    """The job summary."""
    lines = [f"## CDC pipelines: what merging changes (since `{r.since}`)", ""]
    if r.empty:
        return "\n".join([*lines, "No connector changes.", ""])
    lines += ["| | environment | connector |", "|---|---|---|"]
    lines += [f"| added | {m.environment} | `{m.name}` |" for m in r.added]
    lines += [f"| changed | {b.environment} | `{b.name}` |" for b, _a in r.changed]
    lines += [f"| removed | {m.environment} | `{m.name}` |" for m in r.removed]
    if r.backfills:
        lines += ["", "**Tables to backfill** (after the merge, `apply` sends an incremental "
                  "snapshot for each):", ""]
        lines += [f"- {env}: `{table}` in {len(c)} connector(s)"
                  for (env, table), c in sorted(r.backfills.items())]
        lines += [""] + [f"- `cdc-generator apply --environment {env} --connect-url URL`"
                         for env in sorted({env for env, _table in r.backfills})]
    if r.slots:
        lines += ["", "**Slots to drop** once the connectors are gone:", ""]
        lines += [f"- {env}: `{slot}` (was `{name}`)" for env, slot, name in r.slots]
        lines += [""] + [f"- `cdc-generator apply --environment {env} --prune`"
                         for env in sorted({env for env, _slot, _name in r.slots})]
    costly = r.costly()
    if costly:
        lines += ["", "> [!WARNING]", "> Costly backfills:"]
        lines += [f"> - {c}" for c in costly]
    envs = sorted({env for env, _t in r.backfills} | {env for env, _s, _n in r.slots})
    if envs:
        lines += ["", "Table sizes need the databases: "
                  + ", ".join(f"`cdc-generator plan --environment {env}`" for env in envs)
                  + " gives each backfill's row estimate.", ""]
    return "\n".join(lines)


def text(r: Review) -> str:
    if r.empty:
        return f"no connector changes since {r.since}\n"
    lines = [f"since {r.since}: {len(r.added)} added, {len(r.changed)} changed, "
             f"{len(r.removed)} removed"]
    lines += [f"+ {m.environment} {m.name}" for m in r.added]
    lines += [f"~ {b.environment} {b.name}" for b, _a in r.changed]
    lines += [f"- {m.environment} {m.name}" for m in r.removed]
    lines += [f"> backfill {env} {table} in {len(c)} connector(s)"
              for (env, table), c in sorted(r.backfills.items())]
    lines += [f"- slot {env} {slot} (was {name})" for env, slot, name in r.slots]
    lines += [f"! costly: {c}" for c in r.costly()]
    return "\n".join(lines) + "\n"


def payload(r: Review) -> dict[str, object]:
    return {
        "since": r.since,
        "added": [[m.environment, m.name] for m in r.added],
        "changed": [[b.environment, b.name] for b, _a in r.changed],
        "removed": [[m.environment, m.name] for m in r.removed],
        "backfills": [{"environment": e, "table": t, "connectors": c}
                      for (e, t), c in sorted(r.backfills.items())],
        "slots": [{"environment": e, "slot": s, "connector": n} for e, s, n in r.slots],
        "costly": r.costly(),
    }

"""Round-trip edits of `services/*.yaml`: add, remove and create, keeping comments.

Edits go through ruamel.yaml's round-trip mode (comments, key order, quoting
and flow lists survive), are validated against the service JSON schema, and are
written atomically: a temp file beside the target, fsync, `os.replace`.
"""

from __future__ import annotations

import difflib
import io
import itertools
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cdc_generator import rowfilter
from cdc_generator.config import schema, secrets
from cdc_generator.config.load import YamlLoadError, load_document, parse_document
from cdc_generator.config.model import (
    Database,
    ServerGroup,
    Service,
    Table,
    build_server_groups,
)
from cdc_generator.config.repo import GROUPS_FILE, SERVICE_SUFFIXES, SERVICES_DIR
from cdc_generator.db.inspect import TableInfo
from cdc_generator.errors import ConfigError, UsageError
from cdc_generator.rowfilter import CUSTOMER_PLACEHOLDER

SCHEMA_FILE = "schemas/service.schema.json"  # in the repository root, as this one has it
SCHEMA_COMMENT = f"# yaml-language-server: $schema=../{SCHEMA_FILE}"


@dataclass(frozen=True)
class NewTable:
    schema: str | None  # None: every schema the database lists
    name: str
    primary_key: tuple[str, ...]
    filter: str | None = None


@dataclass(frozen=True)
class InspectedTable:
    table: TableInfo
    tracked: bool

    def as_dict(self) -> dict[str, object]:
        t = self.table
        return {
            "schema": t.schema, "name": t.name, "primary_key": list(t.primary_key),
            "columns": len(t.columns), "replica_identity": t.replica_identity,
            "estimated_rows": t.estimated_rows, "tracked": self.tracked,
        }


def service_path(root: Path, name: str) -> Path:
    """Service `name`'s file: services/<name>.yaml or .yml as it exists, else the
    .yaml to create."""
    folder = root / SERVICES_DIR
    return next((p for p in (folder / f"{name}{suffix}" for suffix in SERVICE_SUFFIXES)
                 if p.exists()), folder / f"{name}.yaml")


def tracked_by(service: Service | None, database: Database, schema_name: str,
               table: str) -> Table | None:
    """The entry of `service` that captures `schema_name`.`table` from `database`."""
    if service is None:
        return None
    return next((t for t in service.tables
                 if t.name == table and schema_name in t.schemas_in(database)), None)


def inspection(service: Service | None, database: Database,
               tables: Sequence[TableInfo]) -> list[InspectedTable]:
    return [InspectedTable(t, tracked_by(service, database, t.schema, t.name) is not None)
            for t in tables]


def suggest(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=3)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"known: {', '.join(sorted(known))}" if known else "none known"


def load_groups(root: Path) -> tuple[ServerGroup, ...]:
    """server-groups.yaml alone: `--create` runs while the new service is still
    missing, which the full config check reports as an error."""
    try:
        doc = load_document(root / GROUPS_FILE, GROUPS_FILE, within=root)
    except YamlLoadError as exc:
        raise ConfigError(exc.problems) from None
    found = secrets.Secrets()
    secrets.scan(doc, found)
    problems = [*found.problems, *schema.validate(doc, schema.SERVER_GROUPS_SCHEMA,
                                                  found.paths.get(doc.path, ()))]
    if problems:
        raise ConfigError(found.redact(problems))
    return build_server_groups(doc)


def check_filter(expression: str, customer: str | None,
                 columns: Sequence[str] | None = None) -> None:
    """Raise UsageError if `expression` is not an acceptable row filter."""
    try:
        rowfilter.canonical(expression.replace(CUSTOMER_PLACEHOLDER, customer or "tenant"),
                            columns)
    except rowfilter.RowFilterError as exc:
        raise UsageError(f"--filter: {exc}" + (f" ({exc.hint})" if exc.hint else "")) from None


def table_from_database(name: str, entry_schema: str | None, schemas: Sequence[str],
                        found: Sequence[TableInfo], *, primary_key: tuple[str, ...],
                        filter_expr: str | None, customer: str | None,
                        ) -> tuple[NewTable, list[str]]:
    """Decide the new entry from what the database holds; notes for the user."""
    notes: list[str] = []
    matches = [t for t in found if t.name == name and t.schema in schemas]
    missing = [s for s in schemas if s not in {t.schema for t in matches}]
    if missing:
        known = sorted({t.name for t in found if t.schema in missing})
        raise UsageError(f"table {name!r} not found in schema {', '.join(missing)}; "
                         + suggest(name, known))
    info = matches[0]
    if not primary_key:
        if not info.primary_key:
            raise UsageError(
                f"table {info.qualified} has no primary key. Without one, PostgreSQL cannot "
                "identify the old row of an UPDATE or DELETE (its replica identity is "
                f"{info.replica_identity}) and the sink cannot upsert. Add a primary key, or "
                "pass --primary-key with the columns that identify a row and run "
                f"ALTER TABLE {info.qualified} REPLICA IDENTITY FULL;")
        primary_key = info.primary_key
        if any(t.primary_key != info.primary_key for t in matches):
            raise UsageError(f"table {name!r} has different primary keys in schemas "
                             f"{', '.join(schemas)}; pass --primary-key")
    for table in matches:
        unknown = [c for c in primary_key if c not in table.columns]
        if unknown:
            raise UsageError(f"--primary-key: {table.qualified} has no column "
                             f"{', '.join(unknown)}; {suggest(unknown[0], table.columns)}")
        if not table.replicable:
            notes.append(f"{table.qualified} has no primary key and replica identity "
                         f"{table.replica_identity}: run ALTER TABLE {table.qualified} "
                         "REPLICA IDENTITY FULL; before capturing it")
        elif outside_key := [c for c in primary_key if c not in table.identity_columns]:
            notes.append(f"--primary-key column(s) {', '.join(outside_key)} are outside the "
                         f"replica identity of {table.qualified}: DELETE events would carry "
                         f"empty keys; run ALTER TABLE {table.qualified} REPLICA IDENTITY "
                         "FULL; (or USING INDEX on a unique index over the key)")
    if filter_expr is not None:
        check_filter(filter_expr, customer, info.columns)
        used = rowfilter.referenced_columns(
            filter_expr.replace(CUSTOMER_PLACEHOLDER, customer or "tenant"))
        outside = sorted(used - set(info.identity_columns))
        if outside:
            notes.append(f"the filter reads {', '.join(outside)}, outside the replica identity "
                         f"of {info.qualified}: run ALTER TABLE {info.qualified} REPLICA "
                         "IDENTITY FULL; or PostgreSQL rejects its UPDATEs and DELETEs")
    return NewTable(entry_schema, name, tuple(primary_key), filter_expr), notes


# ---------------------------------------------------------------- text edits


def _yaml(text: str) -> Any:
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long filter
    mapping, sequence, offset = _indentation(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


def _indentation(text: str) -> tuple[int, int, int]:
    """The file's own mapping indent and `- ` placement, so a dump changes nothing else."""
    mapping, offset = 2, 2
    keys = [(len(m.group(1)), m.group(2)) for m in re.finditer(
        r"^( *)(- )?[A-Za-z_][\w-]*:", text, re.MULTILINE)]
    for (col, dash), (next_col, next_dash) in itertools.pairwise(keys):
        if not dash and not next_dash and next_col > col:
            mapping = next_col - col
            break
    for i, (col, dash) in enumerate(keys):
        # a list's key is the nearest key line above it at its column or left of it
        # (`tables:` may put its `- ` items at its own column: an indentless list)
        parent = next((c for c, d in reversed(keys[:i]) if c <= col and not d), None)
        if dash and parent is not None:
            offset = col - parent
            break
    return mapping, offset + 2, offset


@dataclass
class _Doc:
    """A service file loaded for an edit, with what ruamel would not give back by
    itself, kept verbatim: a byte-order mark and the lines up to a `---` opening
    the document (comments above it would be dropped), a `...` closing it; and
    CRLF line ends when every line has one."""

    yaml: Any
    data: Any
    head: str
    tail: str
    crlf: bool

    def dump(self) -> str:
        out = io.StringIO()
        self.yaml.dump(self.data, out)
        body = out.getvalue()
        if self.crlf:
            body = body.replace("\r\n", "\n").replace("\n", "\r\n")
        return self.head + body + self.tail


_COMMENT_LINE = r"[ \t]*(?:#[^\n]*)?\r?\n"
# a BOM, comments and blank lines, then `---` (maybe with a comment)
_DOCUMENT_START = re.compile(rf"\A\ufeff?(?:(?:{_COMMENT_LINE})*---(?:[ \t]+#[^\n]*)?[ \t]*\r?\n)?")
# `...`, then only comments and blank lines
_DOCUMENT_END = re.compile(rf"(?m)^\.\.\.[ \t]*(?:#[^\n]*)?(?:\r?\n(?:{_COMMENT_LINE})*"
                           rf"[ \t]*(?:#[^\n]*)?)?\Z")


def _load(text: str) -> _Doc:
    found = _DOCUMENT_START.match(text)
    head = found.group(0) if found else ""
    end = _DOCUMENT_END.search(text, len(head))
    tail = end.group(0) if end else ""
    body = text[len(head):len(text) - len(tail)]
    yaml = _yaml(body)
    crlf = "\r\n" in text and text.count("\r\n") == text.count("\n")
    return _Doc(yaml, yaml.load(body), head, tail, crlf)


def _entry(table: NewTable) -> Any:
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    entry = CommentedMap()
    if table.schema is not None:
        entry["schema"] = table.schema
    entry["name"] = table.name
    if len(table.primary_key) == 1:
        entry["primary_key"] = table.primary_key[0]
    else:
        keys = CommentedSeq(table.primary_key)
        keys.fa.set_flow_style()
        entry["primary_key"] = keys
    if table.filter is not None:
        entry["filter"] = DoubleQuotedScalarString(table.filter)
    return entry


def refuse_tracked(service: Service, database: Database, name: str, schema_name: str | None,
                   shown: str) -> None:
    """A new entry for `name` must not capture a schema.table an entry already does
    (an entry without a schema covers every schema of the database)."""
    for schema_ in database.schemas_for(schema_name):
        entry = tracked_by(service, database, schema_, name)
        if entry is not None:
            remove = (f"`cdc-generator manage-service --service {service.name} --remove-table "
                      f"{name}" + (f" --schema {entry.schema}`" if entry.schema else "`"))
            covers = entry.schemas_in(database)
            if len(covers) > 1:  # an entry without a schema
                remove += (f" (its entry covers schemas {', '.join(covers)}: that stops "
                           "capturing it from all of them)")
            raise UsageError(f"{shown} already tracks table '{schema_}.{name}'",
                             f"to change its key or filter, first run {remove}")


def add_table_text(text: str, shown: str, table: NewTable) -> str:
    """`text` with `table` appended; the caller has checked with `refuse_tracked`
    that no entry captures it already (that needs the database, which text lacks)."""
    doc = _load(text)
    doc.data["source"]["tables"].append(_entry(table))
    return _checked(doc.dump(), shown)


def remove_table_text(text: str, shown: str, service: str, name: str,
                      schema_name: str | None) -> str:
    doc = _load(text)
    tables = doc.data["source"]["tables"]
    matches = [i for i, t in enumerate(tables) if t.get("name") == name
               and (schema_name is None or t.get("schema") == schema_name)]
    command = f"cdc-generator manage-service --service {service} --remove-table {name}"
    if not matches:
        if any(t.get("name") == name and t.get("schema") is None for t in tables):
            raise UsageError(
                f"{shown} captures {name!r} through an entry without a schema, which covers "
                "every schema of the database",
                f"remove it without --schema: `{command}` (that stops capturing it from all "
                "of them)")
        known = sorted({str(t.get("name")) for t in tables})
        raise UsageError(f"{shown} does not track table {name!r}", suggest(name, known))
    if len(matches) > 1:
        schemas = [str(tables[i].get("schema")) for i in matches]
        raise UsageError(f"{shown} tracks {name!r} in several schemas ({', '.join(schemas)})",
                         "say which: " + " or ".join(f"`{command} --schema {s}`"
                                                     for s in schemas))
    if len(tables) == 1:
        raise UsageError(f"{name!r} is the last table of {shown}; a service needs at least one "
                         "(delete the file to drop the service)")
    index = matches[0]
    _keep_trailing_comment(doc.data["source"], tables, index)
    del tables[index]
    return _checked(doc.dump(), shown)


def _keep_trailing_comment(parent: Any, tables: Any, index: int) -> None:
    """ruamel stores the comment lines after an entry on that entry's last key: they
    introduce whatever follows, so hand them on before deleting the entry."""
    from ruamel.yaml.error import CommentMark
    from ruamel.yaml.tokens import CommentToken

    entry = tables[index]
    if not entry:
        return
    slot = entry.ca.items.get(list(entry.keys())[-1])
    if not slot or len(slot) < 3 or slot[2] is None:
        return
    lines = slot[2].value.split("\n", 1)
    rest = lines[1] if len(lines) == 2 else ""
    if not rest.strip():
        return
    if index == 0:  # they become the comment above the list's new first entry
        if tables.ca.comment and tables.ca.comment[1]:
            tables.ca.comment[1][-1].value += rest
        else:
            token = CommentToken(rest, CommentMark(0), None)
            tables.ca.comment = [None, [token]]
            parent.ca.items.setdefault("tables", [None, None, None, None])[3] = [token]
        return
    previous = tables[index - 1]
    prev_slot = previous.ca.items.setdefault(list(previous.keys())[-1], [None, None, None, None])
    while len(prev_slot) < 4:
        prev_slot.append(None)
    if prev_slot[2] is not None:
        prev_slot[2].value = prev_slot[2].value + rest
    else:
        prev_slot[2] = CommentToken("\n" + rest, CommentMark(0), None)


def new_service_text(name: str, server_group: str, table: NewTable, *,
                     schema_line: bool = True) -> str:
    """A new service file with its first table (a service needs at least one);
    `schema_line`: the editor's `$schema` line (only where schemas/ exists)."""
    head = ((SCHEMA_COMMENT + "\n" if schema_line else "")
            + f"service: {name}\nserver_group: {server_group}\n\n"
            "source:\n  type: postgres\n  tables:\n    - name: first\n")
    doc = _load(head)
    doc.data["source"]["tables"][0] = _entry(table)
    return _checked(doc.dump(), f"{SERVICES_DIR}/{name}.yaml")


def _checked(text: str, shown: str) -> str:
    """Validate the exact text about to be written against the JSON schema."""
    try:
        doc = parse_document(text, shown)
    except YamlLoadError as exc:
        raise ConfigError(exc.problems) from None
    problems = schema.validate(doc, schema.SERVICE_SCHEMA)
    if problems:
        raise ConfigError(problems)
    return text


def read_text(path: Path) -> str:
    """A service file's text with its line ends as they are (CRLF stays CRLF)."""
    return path.read_bytes().decode("utf-8")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise

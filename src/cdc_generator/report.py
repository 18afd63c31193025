"""Render problems and results as text, JSON or GitHub Actions annotations.

The JSON shape (stable, versioned):

    {"version": 1, "command": "validate", "ok": false,
     "problems": [{"file": str, "line": int, "col": int, "key_path": str,
                   "message": str, "hint": str, "severity": "error"}],
     "files": {"added": [...], "changed": [...], "removed": [...]}}   # generate/check/diff

`line`/`col` are 1-based; 0 means unknown. `files` paths are relative to the
repository root. Commands may add keys after these: `generate` adds "seconds"
(float), `generate --check` adds "diff" (unified diff text, "" when fresh).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict

from cdc_generator.errors import Problem
from cdc_generator.layout import in_repo
from cdc_generator.output import Changes

FORMATS = ("text", "json", "github")


def problems_text(problems: Sequence[Problem]) -> str:
    lines = []
    for p in problems:
        key = f" {p.key_path}:" if p.key_path else ""
        lines.append(f"{p.location()}:{key} {p.message}")
        if p.hint:
            lines.append(f"  hint: {p.hint}")
    if problems:
        lines.append(f"{len(problems)} problem(s) found")
    return "\n".join(lines) + ("\n" if lines else "")


def _gh_escape(text: str, *, prop: bool = False) -> str:
    out = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        out = out.replace(":", "%3A").replace(",", "%2C")
    return out


def problems_github(problems: Sequence[Problem]) -> str:
    lines = []
    for p in problems:
        props = []
        if p.file and p.file != "-":  # "-": no file to annotate
            props.append(f"file={_gh_escape(p.file, prop=True)}")
        if props and p.line:
            props += [f"line={p.line}", f"col={p.col or 1}"]
        props.append(f"title={_gh_escape('cdc-generator', prop=True)}")
        message = f"{p.key_path}: {p.message}" if p.key_path else p.message
        if p.hint:
            message += f" (hint: {p.hint})"
        lines.append(f"::{p.severity} {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def changes_payload(changes: Changes) -> dict[str, list[str]]:
    def full(paths: list[str]) -> list[str]:
        return [in_repo(p) for p in paths]

    return {"added": full(changes.added), "changed": full(changes.changed),
            "removed": full(changes.removed)}


def as_json(command: str, ok: bool, problems: Sequence[Problem] = (),
            changes: Changes | None = None, **extra: object) -> str:
    payload: dict[str, object] = {
        "version": 1,
        "command": command,
        "ok": ok,
        "problems": [asdict(p) for p in problems],
    }
    if changes is not None:
        payload["files"] = changes_payload(changes)
    payload.update(extra)
    return json.dumps(payload, indent=2, sort_keys=False) + "\n"


def stale_problems(changes: Changes) -> list[Problem]:
    """Freshness failures as problems, so every format reports them alike."""
    out = []
    for path in changes.changed:
        out.append(Problem(in_repo(path), message="stale: differs from the config",
                           hint="run `cdc-generator generate` and commit the result"))
    for path in changes.added:
        out.append(Problem(in_repo(path), message="missing: the config produces it",
                           hint="run `cdc-generator generate` and commit the result"))
    for path in changes.removed:
        out.append(Problem(in_repo(path),
                           message="orphaned: no service, tenant or environment produces it",
                           hint="run `cdc-generator generate` to remove it"))
    return out

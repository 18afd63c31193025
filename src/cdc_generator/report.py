"""What a command has to say (a `Report`), and the three ways of saying it.

Every command returns a Report, and the CLI renders it once, in the format
`--format` chose (the same meaning for every command):

* `text`: the command's output proper (a diff, a table, checks, exports) on
  stdout; problems, each located and hinted, and status lines on stderr.
* `github`: as `text`, plus one GitHub Actions workflow annotation per problem
  on stdout, so the pull request shows it on the line it names. The default
  under GitHub Actions (GITHUB_ACTIONS=true).
* `json`: one document on stdout, the envelope below; stderr stays empty
  (dev-db alone adds a line there when it stops, after the document).

The envelope (`version` changes only when a key changes its meaning)::

    {"version": 1, "command": "generate --check", "ok": false, "exit_code": 1,
     "problems": [{"file": str, "line": int, "col": int, "key_path": str,
                   "message": str, "hint": str, "severity": "error" | "warning"}],
     "result": {...} | null}

`ok` is `exit_code == 0`. `line`/`col` are 1-based, 0 when unknown; `file` is
relative to the repository root, "-" when a problem has no file (a usage or
connection error). `result` is the command's own data (README: "Output
formats"); null when the command failed before it had any.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import NamedTuple

from cdc_generator.errors import Problem
from cdc_generator.layout import in_repo
from cdc_generator.output import Changes

ENVELOPE_VERSION = 1
FORMATS = ("text", "json", "github")
# exit codes: ok; invalid config, failed check or stale output; usage error; a bug
EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3
NO_FILE = "-"


@dataclass(frozen=True)
class Report:
    """One run of one command, as data: the envelope's members, and what people
    read in the text formats."""

    command: str  # "generate --check", "manage-service --inspect", ...
    exit_code: int = EXIT_OK
    problems: tuple[Problem, ...] = ()
    result: Mapping[str, object] | None = None  # the envelope's "result", JSON-ready
    output: str = ""  # text formats: the command's output proper (stdout)
    messages: tuple[str, ...] = ()  # text formats: status lines for people (stderr)
    # a long-running command's second half (dev-db: serve until Ctrl-C), run
    # after the report is shown; returns the exit code
    hold: Callable[[], int] | None = field(default=None, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK


class Rendered(NamedTuple):
    out: str  # for stdout
    err: str  # for stderr


def render(report: Report, fmt: str, *, root: Path | None = None) -> Rendered:
    """`report` in format `fmt`. Text and GitHub paths are shown from the working
    directory (so `--root sub/dir` still points at the files); JSON keeps them
    relative to the repository root, its documented shape."""
    return REPORTERS[fmt](report, root)


def _text(report: Report, root: Path | None) -> Rendered:
    problems = problems_text(from_cwd(report.problems, root), report.command)
    messages = "".join(f"{m}\n" for m in report.messages)
    return Rendered(report.output, problems + messages)


def _github(report: Report, root: Path | None) -> Rendered:
    text = _text(report, root)
    return Rendered(problems_github(from_cwd(report.problems, root)) + text.out, text.err)


def _json(report: Report, root: Path | None) -> Rendered:
    return Rendered(envelope(report), "")


REPORTERS: dict[str, Callable[[Report, Path | None], Rendered]] = {
    "text": _text, "json": _json, "github": _github,
}


def envelope(report: Report) -> str:
    payload = {
        "version": ENVELOPE_VERSION,
        "command": report.command,
        "ok": report.ok,
        "exit_code": report.exit_code,
        "problems": [asdict(p) for p in report.problems],
        "result": None if report.result is None else dict(report.result),
    }
    return json.dumps(payload, indent=2) + "\n"


def problems_text(problems: Sequence[Problem], command: str = "") -> str:
    """`file:line:col: key.path: message` and its hint, one problem after another;
    a problem without a file reads like a usage error: `cdc-generator CMD: error: ...`."""
    lines, located = [], 0
    for p in problems:
        if p.file in ("", NO_FILE):
            lines.append(f"cdc-generator{f' {command}' if command else ''}: "
                         f"{p.severity}: {p.message}")
        else:
            located += 1
            key = f" {p.key_path}:" if p.key_path else ""
            lines.append(f"{p.location()}:{key} {p.message}")
        if p.hint:
            lines.append(f"  hint: {p.hint}")
    if located:
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
        if p.file and p.file != NO_FILE:  # nothing to annotate
            props.append(f"file={_gh_escape(p.file, prop=True)}")
        if props and p.line:
            props += [f"line={p.line}", f"col={p.col or 1}"]
        props.append(f"title={_gh_escape('cdc-generator', prop=True)}")
        message = f"{p.key_path}: {p.message}" if p.key_path else p.message
        if p.hint:
            message += f" (hint: {p.hint})"
        lines.append(f"::{p.severity} {','.join(props)}::{_gh_escape(message)}")
    return "\n".join(lines) + ("\n" if lines else "")


def from_cwd(problems: Sequence[Problem], root: Path | None) -> list[Problem]:
    prefix = os.path.relpath(root) if root is not None else "."
    if prefix == ".":
        return list(problems)
    return [
        replace(p, file=os.path.join(prefix, p.file))
        if p.file not in ("", NO_FILE) and not os.path.isabs(p.file) else p
        for p in problems
    ]


def changes_payload(changes: Changes) -> dict[str, list[str]]:
    """Added, changed and removed files, relative to the repository root."""
    return {"added": [in_repo(p) for p in changes.added],
            "changed": [in_repo(p) for p in changes.changed],
            "removed": [in_repo(p) for p in changes.removed]}


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

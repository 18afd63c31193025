"""Literal secrets anywhere in a config file: found, located, and never repeated.

A password must be a `${VAR}` placeholder (resolved by Kafka Connect at run
time). Besides password keys, any value or key holding a URL with a password in
its userinfo, `user:password@host`, or a `password=` / `token=` parameter is a
literal secret. The scan reads the raw data, so it runs on files whose schema
is wrong too; a file that is not even YAML is scanned line by line. Every
secret found is also withheld from every other message (`redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cdc_generator.config.load import Document, KeyPath
from cdc_generator.config.providers import PLACEHOLDER
from cdc_generator.config.schema import SECRET_HINT
from cdc_generator.errors import Problem

HINT = SECRET_HINT
MASK = "********"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
# keys whose value is a secret: password, db_password, sslpassword, api_key, token...
SECRET_KEY = re.compile(
    r"(?i)(?:.*[_.-])?(?:ssl)?(?:password|passwd|passphrase|pwd|secret|token|api_?key"
    r"|credentials?)")
_EMBEDDED = (
    # userinfo with a password in a URL: scheme://user:password@host
    ("a URL with a password in it", re.compile(
        r"(?i)[a-z][a-z0-9+.-]*://[^\s/?#@]*:(?!\$\{\w+\}@)[^\s/?#@]*@")),
    # user:password@host with no scheme
    ("a user:password@host", re.compile(r"^[^\s:/@]+:(?!\$\{\w+\}@)[^\s/@]+@[^\s@]+$")),
    # libpq / JDBC / URL parameters: password=..., ;password=..., ?token=...
    ("a password parameter", re.compile(
        r"(?i)(?<![\w.])(?:ssl)?(?:password|passwd|pwd)\s*[=:]\s*(?!\$\{|\s|$)")),
    ("a token in a URL", re.compile(
        r"(?i)[?&;](?:access_?token|token|api_?key|apikey|secret|client_secret|"
        r"signature|sig)=(?!\$\{|&|$)")),
)
# a YAML line `password: value` (or a secret-named key) when the file is not YAML
_LINE_KEY = re.compile(r"""^\s*(?:-\s+)?["']?([\w.-]+)["']?\s*:\s+(.*?)\s*$""")


@dataclass
class Secrets:
    """What the scan found: the problems, the key paths (per file) of the
    secret values, and the texts no message may repeat."""

    problems: list[Problem] = field(default_factory=list)
    paths: dict[str, set[KeyPath]] = field(default_factory=dict)
    texts: set[str] = field(default_factory=set)

    def add(self, file: str, path: KeyPath, text: str, problem: Problem) -> None:
        self.problems.append(problem)
        self.paths.setdefault(file, set()).add(path)
        if text:
            self.texts.add(text)

    def redact(self, problems: Iterable[Problem]) -> list[Problem]:
        return redact(problems, self.texts)


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and SECRET_KEY.fullmatch(key) is not None


_MAYBE = re.compile(r"[:=@]")  # every secret form above has one of these


def embedded_secret(text: str) -> str | None:
    """What kind of literal secret `text` holds, if any."""
    if _MAYBE.search(text) is None:  # most values are plain names
        return None
    for kind, pattern in _EMBEDDED:
        if pattern.search(text):
            return kind
    return None


def scan(doc: Document, found: Secrets) -> None:
    """Every literal secret in `doc`'s data, keys included."""
    for path, key, value in _walk(doc.data, ()):
        if key is not None:
            kind = embedded_secret(key)
            if kind is not None:
                found.add(doc.path, path, key, doc.problem(
                    path[:-1], f"a key holds {kind}; secrets must not be committed", HINT))
        if not isinstance(value, str):
            continue
        if key is not None and is_secret_key(key):
            if PLACEHOLDER.fullmatch(value) is None:
                found.add(doc.path, path, value, doc.problem(
                    path, f"{_what(doc, path)} is a literal value; secrets must not be "
                    "committed", HINT))
            continue
        kind = embedded_secret(value)
        if kind is not None:
            found.add(doc.path, path, value, doc.problem(
                path, f"the value holds {kind}; secrets must not be committed", HINT))


def scan_text(text: str, shown: str, found: Secrets) -> None:
    """A file that is not YAML: line by line, `secret-key: value` lines and
    values holding a secret."""
    for number, line in enumerate(text.splitlines(), start=1):
        match = _LINE_KEY.match(line)
        if match is not None and is_secret_key(match.group(1)):
            value = match.group(2).strip("\"'")
            if value and not value.startswith("#") and PLACEHOLDER.fullmatch(value) is None:
                found.add(shown, (), value, Problem(
                    shown, number, 1, "", f"{match.group(1)} is a literal value; secrets must "
                    "not be committed", HINT))
                continue
        kind = embedded_secret(line.strip())
        if kind is not None:
            found.add(shown, (), line.strip(), Problem(
                shown, number, 1, "", f"the line holds {kind}; secrets must not be committed",
                HINT))


def redact(problems: Iterable[Problem], texts: Iterable[str]) -> list[Problem]:
    """`problems` with every text of `texts` (as written, or as repr() shows it)
    replaced by a mask, in messages, hints and key paths."""
    needles = sorted({n for t in texts for n in (t, repr(t)[1:-1]) if len(n) >= 3},
                     key=len, reverse=True)
    if not needles:
        return list(problems)
    def masked(text: str) -> str:
        for needle in needles:
            if needle in text:
                text = text.replace(needle, MASK)
        return text

    return [Problem(p.file, p.line, p.col, masked(p.key_path), masked(p.message),
                    masked(p.hint), p.severity) for p in problems]


def _walk(data: Any, path: KeyPath) -> Iterator[tuple[KeyPath, str | None, Any]]:
    """(path, key or None, value) of every value under `data`."""
    stack: list[tuple[KeyPath, str | None, Any]] = [(path, None, data)]
    while stack:
        here, key, value = stack.pop()
        yield here, key, value
        if isinstance(value, dict):
            stack.extend(((*here, k), str(k), v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend(((*here, i), None, v) for i, v in enumerate(value))


def _what(doc: Document, path: KeyPath) -> str:
    """`server group 'asma' password`, `environment 'prod' sink password`, or the key path."""
    data = doc.data if isinstance(doc.data, dict) else {}
    key = str(path[-1])
    if len(path) == 4 and path[0] == "server_groups" and path[2] == "server":
        groups = data.get("server_groups")
        index = path[1]
        group = (groups[index] if isinstance(groups, list) and isinstance(index, int)
                 and index < len(groups) else None)
        name = group.get("name") if isinstance(group, dict) else None
        label = (f"server group {name!r}" if isinstance(name, str) and _NAME.fullmatch(name)
                 else f"server group #{index + 1 if isinstance(index, int) else index}")
        return f"{label} {key}"
    if len(path) == 4 and path[0] == "environments" and path[2] == "sink":
        env = path[1]
        if isinstance(env, str) and _NAME.fullmatch(env):
            return f"environment {env!r} sink {key}"
    return f"{key}"

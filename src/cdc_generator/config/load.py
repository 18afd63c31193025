"""Read YAML files into plain data plus the line/column of every key and item.

`${VAR}` placeholders are kept verbatim: they are data, resolved only by Kafka
Connect at run time (or by the live-database commands, never by `generate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from cdc_generator.errors import Problem

try:  # libyaml is an order of magnitude faster; fall back when it is missing
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader

KeyPath = tuple[str | int, ...]


@dataclass
class Document:
    """A parsed YAML file: `data` plus where each key path starts in the file."""

    path: str  # as shown to the user (relative to the repository root)
    data: Any
    marks: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, key_path: KeyPath) -> tuple[int, int]:
        """Line and column (1-based) of `key_path`, or of its nearest ancestor."""
        path = tuple(key_path)
        while path:
            if path in self.marks:
                return self.marks[path]
            path = path[:-1]
        return self.marks.get((), (1, 1))

    def problem(self, key_path: KeyPath, message: str, hint: str = "") -> Problem:
        line, col = self.position(key_path)
        return Problem(self.path, line, col, format_key_path(key_path), message, hint)


def format_key_path(key_path: KeyPath) -> str:
    out = ""
    for part in key_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class YamlLoadError(Exception):
    """A file that cannot be read as YAML: every problem found in it, in order."""

    def __init__(self, *problems: Problem) -> None:
        super().__init__(problems[0].message)
        self.problems = problems


def load_document(file: Path, shown_as: str) -> Document:
    """Parse one YAML file. Raises YamlLoadError with a located Problem."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise YamlLoadError(Problem(shown_as, message="file not found",
                                    hint="run in the repository root or pass --root DIR")) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise YamlLoadError(Problem(shown_as, message=f"cannot read file: {exc}")) from None
    return parse_document(text, shown_as)


_EMPTY_HINT = "write the configuration mapping (see schemas/ for its keys), or delete the file"


def parse_document(text: str, shown_as: str) -> Document:
    if not text.strip():
        raise YamlLoadError(Problem(shown_as, 1, 1, "", "file is empty", _EMPTY_HINT))
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        message = f"invalid YAML: {exc.problem or exc.context}"
        if exc.context and exc.context_mark and exc.problem_mark:
            message += f" ({exc.context} at line {exc.context_mark.line + 1})"
        hint = ("YAML indentation must use spaces, not tabs" if "\t" in _line(text, line)
                else "look at that line and the one above: indentation, a missing ':' "
                "or an unclosed quote or bracket")
        raise YamlLoadError(Problem(shown_as, line, col, "", message, hint)) from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        raise YamlLoadError(Problem(shown_as, message=f"invalid YAML: {exc}")) from None
    if node is None:  # comments only
        raise YamlLoadError(Problem(shown_as, 1, 1, "", "file is empty", _EMPTY_HINT))
    doc = Document(shown_as, None)
    problems: list[Problem] = []
    doc.data = _build(node, (), doc, problems)
    if problems:
        raise YamlLoadError(*problems)
    return doc


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _build(node: yaml.Node, path: KeyPath, doc: Document, problems: list[Problem]) -> Any:
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = (_scalar(key_node, path, doc, problems) if isinstance(key_node, yaml.ScalarNode)
                   else None)
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(Problem(doc.path, line, col, format_key_path(path),
                                    "mapping keys must be plain strings"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                line, col = key_node.start_mark.line + 1, key_node.start_mark.column + 1
                problems.append(Problem(doc.path, line, col, format_key_path((*path, key)),
                                    f"duplicate key {key!r}", "remove one of the two entries"))
            child = (*path, key)
            out[key] = _build(value_node, child, doc, problems)
            # a key's own position is more useful than its value's for messages
            doc.marks[child] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    return _scalar(node, path, doc, problems)


_SCALAR_LOADER = _Loader("")


def _scalar(node: yaml.Node, path: KeyPath, doc: Document, problems: list[Problem]) -> Any:
    try:
        return _SCALAR_LOADER.construct_object(node, deep=True)
    except Exception:  # any constructor's complaint about the user's text
        # e.g. `password: !x...` (a tag nobody defined) or `!!int abc`; the library's
        # own message would quote the value, which may be a secret
        problems.append(Problem(
            doc.path, node.start_mark.line + 1, node.start_mark.column + 1,
            format_key_path(path), "this value cannot be read as written "
            "(a leading '!' makes it a YAML tag)", "put the value in quotes"))
        return None

"""Read YAML files into plain data plus the line/column of every key and item.

`${VAR}` placeholders are kept verbatim: they are data, resolved only by Kafka
Connect at run time (or by the live-database commands, never by `generate`).

Config files come from pull requests, so reading one is bounded whatever it
holds: only a regular file inside the repository is opened (a FIFO, device or
directory is refused without being read), its size is capped, its bytes must be
UTF-8 without control characters, nesting is capped, and aliases may expand to
a bounded number of nodes (a "billion laughs" file is refused at once).
"""

from __future__ import annotations

import os
import re
import stat
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

MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100  # nested mappings and lists
MAX_NODES = 2_000_000  # every node built, aliases included
MAX_ALIAS_NODES = 10_000  # nodes built a second time through an alias or merge key

_MERGE_TAG = "tag:yaml.org,2002:merge"
_INT_TAG = "tag:yaml.org,2002:int"
_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")
# What YAML refuses in a file (controls but tab and line breaks, U+FFFE/U+FFFF),
# and what makes text read differently from how it looks: NEL and the Unicode
# line/paragraph separators (line breaks to YAML, not to an editor) and the
# bidirectional controls ("Trojan Source"). Surrogates cannot survive decoding.
_FORBIDDEN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028-\u202e\u2066-\u2069\ufffe\uffff]")


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
        if isinstance(part, int):
            out += f"[{part}]"
        else:  # a key with a newline or the like must not break the report's lines
            text = str(part)
            if not text.isprintable():
                text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
            out += f".{text}" if out else text
    return out


class YamlLoadError(Exception):
    """A file that could not be read as one YAML document, with every problem
    found; `doc` is the data as far as it could be built (None when nothing could)."""

    def __init__(self, problems: list[Problem], doc: Document | None = None,
                 text: str | None = None) -> None:
        super().__init__(problems[0].message)
        self.problems = problems
        self.doc = doc
        self.text = text  # the decoded text, when there was one

    @property
    def problem(self) -> Problem:
        return self.problems[0]


def shown_name(name: str) -> str:
    """A file name as it may be printed: undecodable bytes and control characters
    escaped, so a hostile name can neither crash the output nor forge lines."""
    raw = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in raw)


def read_regular_file(file: Path, shown: str, within: Path | None = None,
                      max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of `file`, which must be a regular file (inside `within`, if
    given, after following symbolic links) of at most `max_bytes`. Anything else
    raises YamlLoadError without the file being opened."""
    def refuse(message: str, hint: str = "") -> YamlLoadError:
        return YamlLoadError([Problem(shown, message=message, hint=hint)])

    try:
        info = os.stat(file)
    except (FileNotFoundError, NotADirectoryError):
        raise refuse("file not found", "run in the repository root or pass --root DIR") from None
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise refuse("is a directory, not a file", "replace it with the YAML file")
    if not stat.S_ISREG(info.st_mode):
        raise refuse("is not a regular file (a FIFO, socket or device): not read",
                      "replace it with the YAML file")
    if within is not None and not is_within(file, within):
        raise refuse("is a symbolic link to a file outside the repository: not read",
                     "replace the link with the file itself")
    if info.st_size > max_bytes:
        raise refuse(f"file is larger than {max_bytes // (1024 * 1024)} MiB: not read")
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped since the stat above
            raise refuse("is not a regular file: not read")
        chunks, size = [], 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise refuse(f"cannot read file: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > max_bytes:
        raise refuse(f"file is larger than {max_bytes // (1024 * 1024)} MiB: not read")
    return b"".join(chunks)


def is_within(path: Path, root: Path) -> bool:
    """Whether `path`, symbolic links followed, lies inside `root`."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def decode(data: bytes, shown: str) -> str:
    """UTF-8 text holding only characters YAML allows (and none that hide text);
    anything else is a problem at its line and column."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        col = len(data[start:exc.start].decode("utf-8", "replace")) + 1
        raise YamlLoadError([Problem(
            shown, line, col, "", f"not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
            "save the file as UTF-8")]) from None
    found = _FORBIDDEN.search(text)
    if found is not None:
        char = found.group()
        line = text.count("\n", 0, found.start()) + 1
        col = found.start() - (text.rfind("\n", 0, found.start()) + 1) + 1
        what = ("a NUL character (U+0000)" if char == "\0"
                else f"the invisible character U+{ord(char):04X}")
        raise YamlLoadError([Problem(
            shown, line, col, "", f"{what} is not allowed in a config file",
            "remove it: config files hold printable text, tabs and line breaks only")],
            text=text)
    return text


def load_document(file: Path, shown_as: str, within: Path | None = None) -> Document:
    """Parse one YAML file. Raises YamlLoadError with located Problems."""
    text = decode(read_regular_file(file, shown_as, within), shown_as)
    return parse_document(text, shown_as)


_EMPTY_HINT = "write the configuration mapping (see schemas/ for its keys), or delete the file"


def parse_document(text: str, shown_as: str) -> Document:
    if not text.strip():
        raise YamlLoadError([Problem(shown_as, 1, 1, "", "file is empty", _EMPTY_HINT)],
                            text=text)
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
        raise YamlLoadError([Problem(shown_as, line, col, "", message, hint)],
                            text=text) from None
    except yaml.YAMLError as exc:  # pragma: no cover - unmarked errors are rare
        raise YamlLoadError([Problem(shown_as, message=f"invalid YAML: {exc}")],
                            text=text) from None
    if node is None:  # comments only
        raise YamlLoadError([Problem(shown_as, 1, 1, "", "file is empty", _EMPTY_HINT)],
                            text=text)
    doc = Document(shown_as, None)
    builder = _Builder(doc)
    try:
        doc.data = builder.build(node, (), 0)
    except _TooBig as exc:
        raise YamlLoadError([exc.problem], text=text) from None
    if builder.problems:
        raise YamlLoadError(builder.problems, doc, text)
    return doc


def _line(text: str, line: int) -> str:
    lines = text.splitlines()
    return lines[line - 1] if 0 < line <= len(lines) else ""


def _mark(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _TooBig(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


_SCALAR_LOADER = _Loader("")


class _Builder:
    """Turns a composed node graph into data and marks. The graph shares the
    node of an anchor between all its aliases; building it again at each alias
    is what a billion-laughs file multiplies, so repeat visits are counted."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []
        self.seen: set[int] = set()
        self.nodes = 0
        self.repeats = 0

    def _too_big(self, node: yaml.Node, path: KeyPath, message: str, hint: str) -> _TooBig:
        line, col = _mark(node)
        return _TooBig(Problem(self.doc.path, line, col, format_key_path(path), message, hint))

    def _count(self, node: yaml.Node, path: KeyPath, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self._too_big(node, path, f"nested more than {MAX_DEPTH} levels deep",
                                "config files need only a few levels")
        self.nodes += 1
        if id(node) in self.seen:
            self.repeats += 1
            if self.repeats > MAX_ALIAS_NODES:
                raise self._too_big(
                    node, path, f"aliases expand to more than {MAX_ALIAS_NODES} nodes",
                    "write the values out, or use fewer and smaller anchors")
        else:
            self.seen.add(id(node))
        if self.nodes > MAX_NODES:
            raise self._too_big(node, path, f"more than {MAX_NODES} values in one file",
                                "split the configuration")

    def build(self, node: yaml.Node, path: KeyPath, depth: int) -> Any:
        self._count(node, path, depth)
        self.doc.marks[path] = _mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: KeyPath, depth: int) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merges = [v for k, v in node.value if k.tag == _MERGE_TAG]
        if merges:
            out.update(self._merged(merges, path, depth))
            self.doc.marks[path] = _mark(node)
        explicit: set[str] = set()
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = (self._scalar(key_node, path) if isinstance(key_node, yaml.ScalarNode)
                   else None)
            if not isinstance(key, str | int | float | bool) or key is None:
                line, col = _mark(key_node)
                self.problems.append(Problem(self.doc.path, line, col, format_key_path(path),
                                             "mapping keys must be plain strings"))
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in explicit:
                line, col = _mark(key_node)
                self.problems.append(Problem(
                    self.doc.path, line, col, format_key_path((*path, key)),
                    f"duplicate key {key!r}", "remove one of the two entries"))
            explicit.add(key)
            child = (*path, key)
            out[key] = self.build(value_node, child, depth + 1)
            # a key's own position is more useful than its value's for messages
            self.doc.marks[child] = _mark(key_node)
        return out

    def _merged(self, sources: list[yaml.Node], path: KeyPath, depth: int) -> dict[Any, Any]:
        """YAML's merge key: `<<: *base` or `<<: [*a, *b]` adds the keys of those
        mappings that the mapping does not set itself; the first source wins."""
        maps: list[yaml.MappingNode] = []
        for source in sources:
            items = source.value if isinstance(source, yaml.SequenceNode) else [source]
            for item in items:
                if isinstance(item, yaml.MappingNode):
                    maps.append(item)
                else:
                    line, col = _mark(item)
                    self.problems.append(Problem(
                        self.doc.path, line, col, format_key_path(path),
                        "a merge key '<<' takes a mapping or a list of mappings",
                        "write '<<: *anchor' where the anchor names a mapping"))
        out: dict[Any, Any] = {}
        for mapping in reversed(maps):  # earlier sources win: applied last
            out.update(self.build(mapping, path, depth + 1))
        return out

    def _scalar(self, node: yaml.Node, path: KeyPath) -> Any:
        try:
            value = _SCALAR_LOADER.construct_object(node, deep=True)
        except Exception:  # any constructor's complaint about the user's text
            # e.g. `password: !x...` (a tag nobody defined) or `!!int abc`; the library's
            # own message would quote the value, which may be a secret
            self._problem(node, path, "this value cannot be read as written "
                          "(a leading '!' makes it a YAML tag)", "put the value in quotes")
            return None
        if (node.tag == _INT_TAG and isinstance(value, int)
                and not _PLAIN_INT.fullmatch(str(node.value))):
            # YAML 1.1 reads 017 as 15, 0x1F as 31, 1:30 as 90 and 5_432 as 5432
            self._problem(node, path, "this number is not written in plain decimal, and "
                          "YAML 1.1 reads it as a different number (a leading 0 is octal, "
                          "':' is base 60, 0x hex, 0b binary)",
                          "write the number in decimal digits, or quote it if it is a name")
            return None
        return value

    def _problem(self, node: yaml.Node, path: KeyPath, message: str, hint: str) -> None:
        line, col = _mark(node)
        self.problems.append(Problem(self.doc.path, line, col, format_key_path(path),
                                     message, hint))

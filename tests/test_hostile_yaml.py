"""Hostile YAML and file layouts (issue 12, class 3): every one a located problem,
refused fast, the file never read when it is not a regular file.

The corpora are generated: alias bombs of several shapes and sizes, nesting at
and past the bound in every style, bad bytes and forbidden characters at many
positions (the reported line:col must be where they were put), YAML 1.1 numbers
that read as something else, and every kind of non-regular file where a config
file belongs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator.config import load
from tests.helpers import REPO, tree
from tests.hostile import FORMATS, edit, located, problems, run, sample, scratch

GROUPS = "server-groups.yaml"
SERVICE = "services/directory.yaml"


# ---------------------------------------------------------------- alias bombs


def bomb(levels: int, fanout: int, shape: str) -> str:
    """A billion-laughs document of `levels` anchors each `fanout` times the last."""
    lines = ["a0: &a0 [lol]" if shape != "map" else "a0: &a0 {k: lol}"]
    for i in range(1, levels + 1):
        refs = ", ".join(f"*a{i - 1}" for _ in range(fanout))
        if shape == "map":
            body = "{" + ", ".join(f"k{j}: *a{i - 1}" for j in range(fanout)) + "}"
        elif shape == "merge":
            body = "{" + f"<<: [*a{i - 1}], " + ", ".join(
                f"k{j}: *a{i - 1}" for j in range(fanout)) + "}"
        else:
            body = f"[{refs}]"
        lines.append(f"a{i}: &a{i} {body}")
    return "\n".join(lines) + "\n"


SHAPES = ("list", "map", "merge")
# (levels, fanout): fanout ** levels nodes once expanded; the last ones are small
BOMBS = [(levels, fanout, shape) for levels, fanout in ((6, 5), (9, 5), (6, 10), (9, 10),
                                                       (30, 2), (2, 3), (3, 2))
         for shape in SHAPES]


def test_alias_bombs_are_refused_within_a_second(tmp_path: Path) -> None:
    corpus = [(file, *b) for b in BOMBS for file in (GROUPS, SERVICE)]
    for n, (file, levels, fanout, shape) in enumerate(sample(corpus, 12)):
        root = scratch(tmp_path / str(n), templates=False)
        with open(root / file, "a", encoding="utf-8") as fh:
            fh.write(bomb(levels, fanout, shape))
        started = time.perf_counter()
        found = problems(root, seconds=5)
        elapsed = time.perf_counter() - started
        if fanout ** levels > load.MAX_ALIAS_NODES:
            assert elapsed < 1.0, (levels, fanout, shape, elapsed)
            located(found, file, "aliases expand to more than")
        else:  # small enough to build: then only the unknown keys are wrong
            assert not any("aliases expand" in p.message for p in found)
    assert len(corpus) == 42


# ---------------------------------------------------------------- nesting


def nested(depth: int, style: str) -> str:
    if style == "flow-list":
        return "deep: " + "[" * depth + "]" * depth + "\n"
    if style == "flow-map":
        return "deep: " + "{a: " * depth + "x" + "}" * depth + "\n"
    if style == "block-map":
        return "deep:\n" + "".join(" " * (i + 1) + "k:\n" for i in range(depth)) + \
            " " * (depth + 1) + "v\n"
    return "deep:\n" + "  " + "- " * depth + "x\n"


DEPTHS = [load.MAX_DEPTH - 5, load.MAX_DEPTH + 1, 300, 999, 1000, 5000]
STYLES = ["flow-list", "flow-map", "block-map", "block-list"]


def test_deep_nesting_is_a_located_problem(tmp_path: Path) -> None:
    # libyaml's own bound (1000) refuses the deepest, as for flow styles
    corpus = [(file, depth, style) for depth in DEPTHS for style in STYLES
              for file in (GROUPS, SERVICE) if depth <= 1000 or not style.startswith("block")]
    for n, (file, depth, style) in enumerate(sample(corpus, 12)):
        root = scratch(tmp_path / str(n), templates=False)
        with open(root / file, "a", encoding="utf-8") as fh:
            fh.write(nested(depth, style))
        mine = [p for p in problems(root, seconds=5) if p.file == file]
        assert mine, (depth, style)
        assert all(p.line > 0 for p in mine), (depth, style, mine)
        deep = any("nested more than" in p.message or "nesting depth" in p.message
                   for p in mine)
        assert deep == (depth > load.MAX_DEPTH), (depth, style, mine)
    assert len(corpus) == 44


# ------------------------------------------------------- bytes and characters

BAD_BYTES = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf5\x80\x80\x80", b"\x80",
             b"\xe2\x82"]
FORBIDDEN = ["\x00", "\x01", "\x07", "\x08", "\x0b", "\x0c", "\x1b", "\x7f", "\x85",
             "\x9b", "\u2028", "\u2029", "\u202e", "\u2066"]


def positions(text: str) -> Iterator[tuple[int, int]]:
    """(line, col) spots inside keys, values and comments of `text`, 1-based."""
    lines = text.splitlines()
    for number in (1, len(lines) // 3, len(lines) // 2, len(lines) - 1):
        line = lines[number - 1]
        for col in sorted({1, max(1, len(line) // 2), max(1, len(line))}):
            yield number, col


def insert(text: bytes, line: int, col: int, what: bytes) -> bytes:
    lines = text.split(b"\n")
    target = lines[line - 1].decode("utf-8")
    lines[line - 1] = (target[:col - 1].encode() + what + target[col - 1:].encode())
    return b"\n".join(lines)


def _placed(tmp_path: Path, insertions: list[bytes], keep: int) -> int:
    """Each insertion at every spot of both files (a sample of them): reported
    exactly there, and only there. Returns the size of the whole corpus."""
    corpus = [(what, file, spot) for what in insertions for file in (GROUPS, SERVICE)
              for spot in positions((REPO / file).read_text())]
    for n, (what, file, (line, col)) in enumerate(sample(corpus, keep)):
        root = scratch(tmp_path / str(n), templates=False)
        (root / file).write_bytes(insert((REPO / file).read_bytes(), line, col, what))
        found = [p for p in problems(root) if p.file == file]
        assert [(p.line, p.col) for p in found] == [(line, col)], (what, line, col, found)
        text = what.decode("utf-8", "replace")
        assert ("not UTF-8" if "\ufffd" in text else f"U+{ord(text):04X}") in found[0].message
    return len(corpus)


def test_bad_bytes_are_reported_where_they_are(tmp_path: Path) -> None:
    assert _placed(tmp_path, BAD_BYTES, 16) == 168


def test_nul_and_control_characters_are_reported_where_they_are(tmp_path: Path) -> None:
    assert _placed(tmp_path, [c.encode() for c in FORBIDDEN], 28) == 336


# ------------------------------------------------------------ YAML 1.1 numbers

NUMBERS = ["017", "05432", "0x1538", "0b1010100111000", "1:30", "90:32", "5_432", "+0x1F",
           "-0b1", "0o17"]


def test_numbers_that_read_differently_are_refused(tmp_path: Path) -> None:
    corpus = [(key, number) for number in NUMBERS
              for key in ("port", "heartbeat_interval_ms", "sink_tasks_max")]
    for n, (key, number) in enumerate(sample(corpus, 10)):
        root = scratch(tmp_path / str(n), templates=False)
        if key == "port":
            edit(root / GROUPS, "      port: ${POSTGRES_ADOPUS_PORT}", f"      port: {number}")
        elif key == "sink_tasks_max":
            edit(root / GROUPS, "    sink_tasks_max: 2", f"    sink_tasks_max: {number}")
        else:
            edit(root / GROUPS, "    sink_tasks_max: 2",
                 f"    sink_tasks_max: 2\n    {key}: {number}")
        found = problems(root)
        assert found, number
        assert all(p.file == GROUPS and p.line > 0 for p in found), (number, found)
    assert len(corpus) == 30


def test_a_plain_decimal_port_is_accepted(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    edit(root / GROUPS, "      port: ${POSTGRES_ADOPUS_PORT}", "      port: 5433")
    assert problems(root) == []


# ---------------------------------------------------------------- merge keys


def test_merge_keys_are_supported(tmp_path: Path) -> None:
    """`<<: *anchor` gives exactly the output of the expanded file."""
    root = scratch(tmp_path / "repo")
    edit(root / GROUPS, "    server:\n      type: postgres\n      host: ${POSTGRES_ASMA_HOST}",
         "    server: &base\n      type: postgres\n      host: ${POSTGRES_ASMA_HOST}")
    edit(root / GROUPS, "    server:\n      type: postgres\n      host: ${POSTGRES_ADOPUS_HOST}",
         "    server:\n      <<: *base\n      host: ${POSTGRES_ADOPUS_HOST}")
    run(root, "generate").assert_handled(code=0)
    assert tree(root / "generated") == tree(REPO / "generated")


@pytest.mark.parametrize("value", ["5", "[1, 2]", "text", "[*base, 3]"])
def test_a_merge_key_without_a_mapping_is_refused(value: str, tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    edit(root / GROUPS, "    server:\n      type: postgres\n      host: ${POSTGRES_ASMA_HOST}",
         f"    server: &base\n      type: postgres\n      host: ${{POSTGRES_ASMA_HOST}}\n"
         f"    x: &other\n      <<: {value}")
    located(problems(root), GROUPS, "a merge key '<<' takes a mapping")


# ---------------------------------------------------------- what is not a file


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)  # a socket path is limited to about 100 bytes
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
        sock.close()


def _link_to(target: str) -> object:
    def make(path: Path) -> None:
        path.symlink_to(target)
    return make


def _link_loop(path: Path) -> None:
    path.symlink_to(path.name)


def _link_out(path: Path) -> None:
    outside = path.parent.parent.parent / f"outside-{path.name}"
    outside.write_text((REPO / "server-groups.yaml").read_text())
    path.symlink_to(outside)


def _too_big(path: Path) -> None:
    with open(path, "wb") as fh:
        fh.truncate(load.MAX_FILE_BYTES + 1)  # sparse: nothing to read anyway


LAYOUTS = {
    "fifo": (_fifo, "not a regular file"),
    "directory": (_directory, "is a directory"),
    "socket": (_socket, "not a regular file"),
    "char device": (_link_to("/dev/zero"), "not a regular file"),
    "environ": (_link_to("/proc/self/environ"), "outside the repository"),
    "link out": (_link_out, "outside the repository"),
    "dangling link": (_link_to("nowhere.yaml"), "file not found"),
    "link loop": (_link_loop, "cannot read file"),
    "too big": (_too_big, "larger than"),
}


@pytest.mark.parametrize("file", [GROUPS, SERVICE])
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_what_is_not_a_regular_file_is_refused_unread(layout: str, file: str,
                                                      tmp_path: Path) -> None:
    root = scratch(tmp_path / "r", templates=False)
    (root / file).unlink()
    make, message = LAYOUTS[layout]
    make(root / file)  # type: ignore[operator]
    found = problems(root, seconds=5)  # a FIFO opened for reading would block forever
    mine = [p for p in found if p.file == file]
    assert mine, found
    assert message in mine[0].message, found


def test_a_link_inside_the_repository_is_read(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    (root / "shared").mkdir()
    os.replace(root / SERVICE, root / "shared" / "directory.yaml")
    (root / SERVICE).symlink_to(Path("..") / "shared" / "directory.yaml")
    assert problems(root) == []


def test_services_that_is_a_file_is_reported(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    for file in (root / "services").iterdir():
        file.unlink()
    (root / "services").rmdir()
    (root / "services").write_text("not a folder\n")
    found = [p for p in problems(root) if p.file == "services"]
    assert found
    assert "is not a directory" in found[0].message


# ---------------------------------------------------------------- formats


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_class_is_reported_in_every_format(fmt: str, tmp_path: Path) -> None:
    """A bomb, a NUL and a FIFO at once: exit 1, each located, in text, json, github."""
    root = scratch(tmp_path / "repo")
    with open(root / GROUPS, "a", encoding="utf-8") as fh:
        fh.write(bomb(9, 10, "list"))
    (root / "services" / "directory.yaml").write_bytes(b"service: dir\x00ectory\n")
    (root / "services" / "accounting.yaml").unlink()
    os.mkfifo(root / "services" / "accounting.yaml")
    outcome = run(root, "validate", fmt=fmt, seconds=10)
    outcome.assert_handled()
    want = {
        "text": ["server-groups.yaml:", "aliases expand", "services/directory.yaml:1:13:",
                 "U+0000", "services/accounting.yaml: is not a regular file"],
        "json": ['"file": "server-groups.yaml"', "aliases expand", '"line": 1', '"col": 13',
                 "U+0000", "is not a regular file"],
        "github": ["::error file=server-groups.yaml,line=", "aliases expand",
                   "::error file=services/directory.yaml,line=1,col=13", "U+0000",
                   "file=services/accounting.yaml,title"],
    }[fmt]
    for part in want:
        assert part in outcome.text, (part, outcome.text)

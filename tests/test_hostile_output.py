"""Hostile file layouts around generated/ (issue 12, class 4): what is not a
directory of ours is refused with exit 1 before anything moves, the user's files
stay where and what they were, nothing is read or written through a symbolic
link, and no run leaves debris beside generated/.

The corpus is every kind of entry (file, FIFO, socket, symbolic link to a
directory, to a file, dangling; read-only directory) in the places a run looks:
generated/ itself, its transient siblings .generated.tmp-* / .generated.old-*,
and inside generated/ at a path generate produces, at an orphan path and as a
directory. Each is tried with generate, generate --check and diff.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers import REPO
from tests.hostile import FORMATS, FULL, run, sample, scratch

PRODUCED = "pipelines/directory/prod/source-directory.yaml"
OUTSIDE = "outside"  # beside the repository: no run may touch or read it
OUTSIDE_TEXT = "a file outside the repository: cdc-canary-Wq3\n"


Snapshot = dict[str, tuple[int, int, bytes | str]]


def _snapshot(path: Path) -> Snapshot:
    """Every entry under `path` (not following links): kind, inode and content."""
    out: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            info = os.lstat(full)
            if stat.S_ISREG(info.st_mode):
                with open(full, "rb") as fh:
                    content: bytes | str = fh.read()
            elif stat.S_ISLNK(info.st_mode):
                content = os.readlink(full)
            else:
                content = ""
            out[os.path.relpath(full, path)] = (stat.S_IFMT(info.st_mode), info.st_ino, content)
    return out


def _file(path: Path) -> None:
    path.write_text("the user's own file\n")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX)
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        sock.bind(path.name)
    finally:
        os.chdir(cwd)
        sock.close()


def _link_dir(path: Path) -> None:
    path.symlink_to(path.parent.parent / OUTSIDE)


def _link_file(path: Path) -> None:
    path.symlink_to(path.parent.parent / OUTSIDE / "file.txt")


def _dangling(path: Path) -> None:
    path.symlink_to(path.parent / "nowhere")


def _read_only(path: Path) -> None:
    path.mkdir()
    (path / "kept.txt").write_text("x\n")
    path.chmod(0o555)


KINDS: dict[str, Callable[[Path], None]] = {
    "file": _file, "fifo": _fifo, "socket": _socket, "link to a directory": _link_dir,
    "link to a file": _link_file, "dangling link": _dangling, "read-only directory": _read_only,
}
COMMANDS = [("generate",), ("generate", "--check"), ("diff",)]
ODD = ["fifo", "socket", "link to a directory", "link to a file", "dangling link"]


def _repo(tmp_path: Path, *, generated: bool = False) -> Path:
    root = scratch(tmp_path / "repo")
    if generated:  # as `generate` leaves it, without running it
        shutil.copytree(REPO / "generated", root / "generated")
    outside = tmp_path / OUTSIDE
    outside.mkdir()
    (outside / "file.txt").write_text(OUTSIDE_TEXT)
    return root


@pytest.fixture(autouse=True)
def _writable_afterwards(tmp_path: Path) -> object:
    yield
    for dirpath, dirnames, _files in os.walk(tmp_path):  # let pytest clean up
        for name in dirnames:
            full = os.path.join(dirpath, name)
            if not os.path.islink(full):
                os.chmod(full, 0o755)


def _assert_untouched(tmp_path: Path, root: Path, before: Snapshot,
                      outside_before: Snapshot) -> None:
    after = _snapshot(root)
    assert after == before, {k: v for k, v in after.items() if before.get(k) != v}
    assert _snapshot(tmp_path / OUTSIDE) == outside_before


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_that_is_not_our_directory(kind: str, tmp_path: Path) -> None:
    # generate always; the reading commands in turn (all with CDC_HOSTILE_FULL=1)
    reading = COMMANDS[1:] if FULL else [COMMANDS[1 + sorted(KINDS).index(kind) % 2]]
    for command in [COMMANDS[0], *reading]:
        root = _repo(tmp_path / command[-1])
        KINDS[kind](root / "generated")
        before, outside = _snapshot(root), _snapshot(tmp_path / command[-1] / OUTSIDE)
        outcome = run(root, *command, seconds=10)
        writes = command == ("generate",)
        refused = writes or kind != "read-only directory"
        if kind == "dangling link" or refused:
            outcome.assert_handled(code=1)
            assert "generated" in outcome.err, outcome.err
            assert OUTSIDE_TEXT not in outcome.text
        else:  # reading a read-only generated/ is fine: it is merely stale
            assert outcome.code in (0, 1), outcome.text
            assert "Traceback" not in outcome.text
        _assert_untouched(tmp_path / command[-1], root, before, outside)


@pytest.mark.parametrize(("prefix", "kind"), sample(
    [(prefix, kind) for kind in ["file", *ODD] if kind not in ("socket",)
     for prefix in (".generated.tmp-", ".generated.old-")], 4))
def test_a_stale_sibling_that_is_not_ours(prefix: str, kind: str, tmp_path: Path) -> None:
    root = _repo(tmp_path, generated=True)
    KINDS[kind](root / f"{prefix}999999999-cafe")
    before, outside = _snapshot(root), _snapshot(tmp_path / OUTSIDE)
    outcome = run(root, "generate")
    outcome.assert_handled()
    assert f"{prefix}999999999-cafe" in outcome.err
    _assert_untouched(tmp_path, root, before, outside)


INSIDE = {
    "produced path": PRODUCED,
    "orphan path": "pipelines/directory/prod/extra.yaml",
    "directory": "pipelines/directory",
}


@pytest.mark.parametrize(("where", "kind"), sample(
    [(where, kind) for kind in ODD for where in sorted(INSIDE)], 6))
def test_odd_entries_inside_generated_are_replaced_never_followed(where: str, kind: str,
                                                                  tmp_path: Path) -> None:
    root = _repo(tmp_path, generated=True)
    target = root / "generated" / INSIDE[where]
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    KINDS[kind](target)
    outside = _snapshot(tmp_path / OUTSIDE)
    outcome = run(root, "generate", "--check", seconds=10)  # reading a FIFO would block
    outcome.assert_handled()
    assert OUTSIDE_TEXT not in outcome.text
    assert "generated/" + INSIDE[where] in outcome.err
    run(root, "generate").assert_handled(code=0)
    contents = {k: v[2] for k, v in _snapshot(root / "generated").items()}
    assert contents == {k: v[2] for k, v in _snapshot(REPO / "generated").items()}
    assert _snapshot(tmp_path / OUTSIDE) == outside
    assert not [p for p in root.iterdir() if p.name.startswith(".generated")]


def test_a_read_only_directory_inside_generated(tmp_path: Path) -> None:
    root = _repo(tmp_path, generated=True)
    (root / "generated" / "pipelines" / "directory").chmod(0o555)
    before = _snapshot(root)
    outcome = run(root, "generate")
    outcome.assert_handled()
    assert "generated/pipelines/directory: is read-only" in outcome.err
    assert _snapshot(root) == before


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_refusal_in_every_format(fmt: str, tmp_path: Path) -> None:
    root = _repo(tmp_path)
    _link_dir(root / "generated")
    outcome = run(root, "generate", fmt=fmt)
    outcome.assert_handled()
    want = {"text": "generated: is a symbolic link", "json": '"file": "generated"',
            "github": "::error file=generated,title=cdc-generator::is a symbolic link"}[fmt]
    assert want in outcome.text, outcome.text

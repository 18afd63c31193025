"""The one writer of `generated/`: atomic tree swap, pruning, freshness check, diff.

A run builds the complete new tree beside `generated/` (unchanged files are
hard links, so their times stay as they were) and swaps it in with one
`renameat2(RENAME_EXCHANGE)`: a run killed at any point leaves the old tree or
the new one. Nothing outside `generated/` and its transient siblings
`.generated.*` is touched.
"""

from __future__ import annotations

import difflib
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdc_generator import names

GENERATED_DIR = "generated"
_TMP_PREFIX = ".generated.tmp-"
_OLD_PREFIX = ".generated.old-"


@dataclass(frozen=True)
class Scope:
    """Which part of `generated/` a run owns: everything, or one service/environment."""

    service: str | None = None
    environment: str | None = None

    def owns(self, rel_path: str) -> bool:
        if self.service is None and self.environment is None:
            return True
        parts = rel_path.split("/")
        if len(parts) < 4:  # <kind>/<service>/<env>/<file>
            return False
        if self.service is not None and parts[1] != names.k8s(self.service):
            return False
        return self.environment is None or parts[2] == self.environment


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


def read_files(directory: Path, paths: Iterable[str]) -> dict[str, bytes]:
    """The files `paths` (relative, '/'-separated) under `directory` that exist."""
    out = {}
    for rel in paths:
        try:
            out[rel] = _read(os.path.join(directory, rel))
        except FileNotFoundError:
            continue
    return out


def _walk(directory: Path) -> Iterable[tuple[str, str]]:
    """(relative '/'-separated path, full path) of every file under `directory`."""
    top = str(directory)
    if not os.path.isdir(top):
        return
    base = len(top) + 1
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            full = os.path.join(dirpath, name)
            yield full[base:].replace(os.sep, "/"), full


def _read(path: str) -> bytes:
    return _read_sized(path, None) or b""


def _read_sized(path: str, size: int | None) -> bytes | None:
    """The bytes of `path`; None at once when `size` is given and the file's differs."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        actual = os.fstat(fd).st_size
        if size is not None and size != actual:
            return None
        chunks = [os.read(fd, actual + 1)]
        while chunks[-1]:  # to the end, as the file may have grown since fstat
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


def compare_tree(desired: Mapping[str, bytes], directory: Path,
                 scope: Scope) -> tuple[Changes, list[str]]:
    """What differs between `desired` and the tree under `directory`, within `scope`,
    without holding the old tree in memory: each file is read once (not at all when
    its size differs) and dropped. Also returns every path found, for `write_tree`."""
    changes = Changes()
    found = []
    for rel, full in _walk(directory):
        found.append(rel)
        want = desired.get(rel)
        if want is None:
            if scope.owns(rel):
                changes.removed.append(rel)
        elif _read_sized(full, len(want)) == want:
            changes.unchanged.append(rel)
        else:
            changes.changed.append(rel)
    seen = set(found)
    changes.added = [p for p in desired if p not in seen]
    for bucket in (changes.added, changes.changed, changes.removed, changes.unchanged):
        bucket.sort()
    return changes, found


def unified_diff(changes: Changes, desired: Mapping[str, bytes],
                 existing: Mapping[str, bytes]) -> str:
    chunks: list[str] = []
    for path in sorted([*changes.added, *changes.changed, *changes.removed]):
        old = existing.get(path, b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = desired.get(path, b"").decode("utf-8", "replace").splitlines(keepends=True)
        from_name = f"a/{GENERATED_DIR}/{path}" if path in existing else "/dev/null"
        to_name = f"b/{GENERATED_DIR}/{path}" if path in desired else "/dev/null"
        chunks.extend(difflib.unified_diff(old, new, from_name, to_name))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def recover(root: Path) -> None:
    """Undo what a killed run may have left: a half-built tree, or (without
    RENAME_EXCHANGE) an old tree moved aside before the new one was in place."""
    target = root / GENERATED_DIR
    for leftover in sorted(root.glob(_OLD_PREFIX + "*")):
        if not target.exists():
            os.rename(leftover, target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in root.glob(_TMP_PREFIX + "*"):
        shutil.rmtree(leftover, ignore_errors=True)


def write_tree(root: Path, desired: Mapping[str, bytes], scope: Scope) -> Changes:
    """Make `generated/` hold `desired` (within `scope`); return what changed."""
    recover(root)
    target = root / GENERATED_DIR
    changes, found = compare_tree(desired, target, scope)
    if not changes.any:
        return changes
    keep = [p for p in found if not scope.owns(p) and p not in desired]
    staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=root))
    try:
        _populate(staging, target, desired, changes, keep)
        _swap_in(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return changes


def _populate(staging: Path, target: Path, desired: Mapping[str, bytes],
              changes: Changes, keep: Iterable[str]) -> None:
    # plain str paths and os calls: this runs once per file of the tree
    made: set[str] = set()
    new_root, old_root = str(staging), str(target)

    def parent_of(rel: str) -> str:
        out = os.path.join(new_root, rel)
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(os.path.dirname(out), exist_ok=True)
            made.add(parent)
        return out

    for rel in (*changes.unchanged, *keep):
        dest = parent_of(rel)
        try:
            os.link(os.path.join(old_root, rel), dest)
        except OSError:
            shutil.copy2(os.path.join(old_root, rel), dest)
    for rel in (*changes.added, *changes.changed):
        data = desired[rel]
        fd = os.open(parent_of(rel), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    staging.chmod(0o755)


def _swap_in(staging: Path, target: Path) -> None:
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging)  # now holds the old tree
        return
    old = target.with_name(_OLD_PREFIX + staging.name[len(_TMP_PREFIX):])
    os.rename(target, old)
    os.rename(staging, target)
    shutil.rmtree(old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2). False where unsupported."""
    import ctypes  # only a run that writes needs it

    # the symbols already loaded into this process, libc's among them: no
    # ctypes.util.find_library, which may run ldconfig or a compiler
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)

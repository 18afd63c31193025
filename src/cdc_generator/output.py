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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdc_generator import layout
from cdc_generator.errors import CdcError

_TMP_PREFIX = ".generated.tmp-"
_OLD_PREFIX = ".generated.old-"


@dataclass(frozen=True)
class Scope:
    """Which part of `generated/` a run owns: everything, or one service/environment."""

    service: str | None = None
    environment: str | None = None

    def owns(self, rel_path: str) -> bool:
        return layout.owned_by(rel_path, self.service, self.environment)


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def absorb(self, other: Changes) -> None:
        """Add `other`'s paths to these (the paths of another producer's files)."""
        self.added += other.added
        self.changed += other.changed
        self.removed += other.removed
        self.unchanged += other.unchanged


def read_files(directory: Path, paths: Iterable[str]) -> dict[str, bytes]:
    """The files `paths` (relative, '/'-separated) under `directory` that exist."""
    out = {}
    for rel in paths:
        try:
            out[rel] = _read(os.path.join(directory, rel))
        except FileNotFoundError:
            continue
    return out


def _walk(directory: Path) -> Iterable[str]:
    """The relative, '/'-separated path of every file under `directory`."""
    top = str(directory)
    if not os.path.isdir(top):
        return
    base = len(top) + 1
    for dirpath, _dirnames, filenames in os.walk(top):
        for name in filenames:
            yield os.path.join(dirpath, name)[base:].replace(os.sep, "/")


def _listdir(directory: str) -> set[str]:
    try:
        return set(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return set()


def _same_bytes(path: str, data: bytes) -> bool | None:
    """Whether the file at `path` holds exactly `data`; None when there is none.
    Reads at most one byte more than `data`: a longer file cannot match."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        want, chunks, got = len(data) + 1, [], 0
        while got < want:  # to the end, or one byte past `data`; reads may come short
            chunk = os.read(fd, want - got)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks) == data
    except IsADirectoryError:
        return None
    finally:
        os.close(fd)


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


class _Tree:
    """Paths under a new tree's root, each parent directory made once (this runs
    once per file; several processes may make the same directories)."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self._made: set[str] = set()

    def path_for(self, rel: str) -> str:
        parent = os.path.dirname(rel)
        if parent not in self._made:
            os.makedirs(os.path.join(self.root, parent), exist_ok=True)
            self._made.add(parent)
        return os.path.join(self.root, rel)


@dataclass
class Part:
    """What one producer of files found: its paths by status and, when checking,
    the new bytes of its added and changed files (for the diff)."""

    changes: Changes
    new: dict[str, bytes]


class Staged:
    """One run's files, each compared with the old tree as it is produced.

    Writing (`write=True`), a file that is new or differs goes straight into the
    staging tree beside `generated/`; nothing else is held. Several processes may
    feed one `Staged` (each its own files: parallel.py), as the staging tree's
    name is chosen here and created by whichever first writes into it.
    `commit` then links the unchanged files in and swaps the tree in atomically.
    """

    def __init__(self, root: Path, *, write: bool, keep_new: bool = True) -> None:
        self.target = layout.generated_dir(root)
        self.write = write
        self.keep_new = keep_new  # checking: keep new bytes of added/changed files (the diff)
        self.staging = root / f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"

    def put_all(self, files: Iterable[tuple[str, bytes]]) -> Part:
        # plain str paths and os calls: this runs once per file of the tree
        changes, new = Changes(), {}
        old_root, into = str(self.target), _Tree(self.staging)
        old_names: dict[str, set[str]] = {}  # directory -> its old files (no failing opens)
        for rel, data in files:
            parent, name = os.path.split(rel)
            names = old_names.get(parent)
            if names is None:
                names = old_names[parent] = _listdir(os.path.join(old_root, parent))
            same = _same_bytes(os.path.join(old_root, rel), data) if name in names else None
            if same is None:
                changes.added.append(rel)
            elif same:
                changes.unchanged.append(rel)
                continue
            else:
                changes.changed.append(rel)
            if not self.write:
                if self.keep_new:
                    new[rel] = data
                continue
            _write_new(into.path_for(rel), data)
        return Part(changes, new)

    def settle(self, parts: Iterable[Changes],
               scope: Scope) -> tuple[Changes, list[str]]:
        """All parts together, plus the old files no part produced: removed when
        `scope` owns them, else kept (returned second)."""
        changes = Changes()
        for part in parts:
            changes.absorb(part)
        produced = {*changes.added, *changes.changed, *changes.unchanged}
        kept: list[str] = []
        for rel in _walk(self.target):
            if rel not in produced:
                (changes.removed if scope.owns(rel) else kept).append(rel)
        for bucket in (changes.added, changes.changed, changes.removed, changes.unchanged):
            bucket.sort()
        return changes, kept

    def commit(self, parts: Iterable[Changes], scope: Scope) -> Changes:
        """Make `generated/` the produced files (plus the old ones outside `scope`)."""
        changes, kept = self.settle(parts, scope)
        if (changes.added or changes.changed) and not self.staging.is_dir():
            raise CdcError(f"{self.staging.name}, where this run wrote the new files, is gone: "
                           "was it removed by hand? Run `cdc-generator generate` again")
        if changes.any:
            os.makedirs(self.staging, exist_ok=True)
            _link_old(self.staging, self.target, (*changes.unchanged, *kept))
            _swap_in(self.staging, self.target)
        return changes

    def discard(self) -> None:
        """Remove the staging tree if this run made one and did not swap it in."""
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)


def unified_diff(changes: Changes, desired: Mapping[str, bytes],
                 existing: Mapping[str, bytes]) -> str:
    chunks: list[str] = []
    for path in sorted([*changes.added, *changes.changed, *changes.removed]):
        old = existing.get(path, b"").decode("utf-8", "replace").splitlines(keepends=True)
        new = desired.get(path, b"").decode("utf-8", "replace").splitlines(keepends=True)
        from_name = f"a/{layout.in_repo(path)}" if path in existing else "/dev/null"
        to_name = f"b/{layout.in_repo(path)}" if path in desired else "/dev/null"
        chunks.extend(difflib.unified_diff(old, new, from_name, to_name))
    return "".join(line if line.endswith("\n") else line + "\n" for line in chunks)


def recover(root: Path) -> None:
    """Undo what a killed run may have left: a half-built tree, or (without
    RENAME_EXCHANGE) an old tree moved aside before the new one was in place.
    The transient trees of a run still going on (another process) are left alone."""
    target = layout.generated_dir(root)
    for leftover in sorted(root.glob(_OLD_PREFIX + "*")):
        if _run_alive(leftover.name[len(_OLD_PREFIX):]):
            continue
        if not target.exists():
            os.rename(leftover, target)
        else:
            shutil.rmtree(leftover, ignore_errors=True)
    for leftover in root.glob(_TMP_PREFIX + "*"):
        if not _run_alive(leftover.name[len(_TMP_PREFIX):]):
            shutil.rmtree(leftover, ignore_errors=True)


def _run_alive(suffix: str) -> bool:
    """Whether the process named in a transient tree's `<pid>-<random>` suffix runs."""
    try:
        pid = int(suffix.split("-", 1)[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # a leftover of an earlier call in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process, and alive
    return True


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)


def _link_old(staging: Path, target: Path, paths: Iterable[str]) -> None:
    """Hard-link old files into the staging tree: same inode, same times."""
    new, old_root = _Tree(staging), str(target)
    for rel in paths:
        dest = new.path_for(rel)
        try:
            os.link(os.path.join(old_root, rel), dest)
        except OSError:
            shutil.copy2(os.path.join(old_root, rel), dest)


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

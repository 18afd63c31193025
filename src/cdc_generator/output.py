"""The one writer of `generated/`: atomic tree swap, pruning, freshness check, diff.

A run builds the complete new tree beside `generated/` (unchanged files are
hard links, so their times stay as they were) and swaps it in with one
`renameat2(RENAME_EXCHANGE)`: a run killed at any point leaves the old tree or
the new one. Nothing outside `generated/` and its transient siblings
`.generated.*` is touched, and a run that ends, however, removes its sibling.

`generated/` must be a directory we may write: a file, a symbolic link, a
read-only directory or a sibling `.generated.*` that is not a directory of ours
stops the run before anything moves. Inside it, nothing is read through a
symbolic link and nothing but regular files is read at all.
"""

from __future__ import annotations

import difflib
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cdc_generator import layout
from cdc_generator.errors import CdcError, ConfigError, Problem
from cdc_generator.layout import GENERATED_DIR

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
    """The regular files `paths` (relative, '/'-separated) under `directory` that
    exist, read without following symbolic links (others read as empty)."""
    out = {}
    for rel in paths:
        data = _read_regular(os.path.join(directory, rel), limit=None)
        if data is not None:
            out[rel] = data
    return out


def scan(directory: Path) -> tuple[dict[str, bool], list[str]]:
    """Every entry under `directory` that is not a directory -> whether it is a
    regular file, and every directory (relative, '/'-separated; "" is the top).
    Symbolic links are entries, never followed."""
    files: dict[str, bool] = {}
    dirs: list[str] = []
    if not os.path.isdir(directory) or os.path.islink(directory):
        return files, dirs
    pending = [""]
    while pending:
        rel = pending.pop()
        dirs.append(rel)
        with os.scandir(os.path.join(directory, rel)) as entries:
            for entry in entries:
                path = f"{rel}/{entry.name}" if rel else entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append(path)
                else:
                    files[path] = entry.is_file(follow_symlinks=False)
    return files, dirs


def _writable(path: str) -> bool:
    """Writable by us, and not marked read-only (no write bit) even for root."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    return bool(mode & 0o222) and os.access(path, os.W_OK | os.X_OK)


def check_target(root: Path, *, write: bool) -> None:
    """Refuse a `generated/` that is not a directory (a file, a FIFO, a symbolic
    link) and, when writing, one that is read-only or has a sibling of ours
    (`.generated.*`) that is not a directory: exit 1, nothing moved."""
    target = root / GENERATED_DIR
    problems = []
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        problems.append(_problem(GENERATED_DIR, f"cannot be read: {exc.strerror}"))
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        problems.append(_problem(GENERATED_DIR, "is a symbolic link: cdc-generator neither "
                                 "reads nor writes through it",
                                 "remove the link; generate makes generated/ a directory"))
    elif info is not None and not stat.S_ISDIR(info.st_mode):
        problems.append(_problem(GENERATED_DIR, "exists and is not a directory",
                                 "move the file away; generate makes generated/ a directory"))
    elif info is not None and write and not _writable(str(target)):
        problems.append(_problem(GENERATED_DIR, "is read-only",
                                 "make it writable (chmod u+w generated) to let generate "
                                 "replace it, or run generate --check"))
    if write:
        for sibling in sorted(_siblings(root)):
            if os.path.islink(sibling) or not os.path.isdir(sibling):
                problems.append(_problem(
                    sibling.name, "is named like a transient tree of generate but is not a "
                    "directory (a file or a symbolic link): not touched",
                    "remove it by hand, then run generate again"))
    if problems:
        raise ConfigError(problems)


def _problem(file: str, message: str, hint: str = "") -> Problem:
    return Problem(file, message=message, hint=hint)


def _siblings(root: Path) -> list[Path]:
    try:
        return [root / name for name in os.listdir(root)
                if name.startswith((_TMP_PREFIX, _OLD_PREFIX))]
    except OSError:
        return []


def _read_regular(path: str, limit: int | None, *, listed: bool = False) -> bytes | None:
    """The bytes of `path` if it is a regular file (not through a symbolic link;
    a FIFO is never waited on), at most `limit` of them; None otherwise.
    `listed`: the scan of the tree found a regular file there (no fstat again)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if not listed and not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks, got = [], 0
        while limit is None or got < limit:  # reads may come short
            chunk = os.read(fd, (limit - got) if limit is not None else 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def _same_bytes(path: str, data: bytes) -> bool:
    """Whether the regular file at `path` holds exactly `data`. Reads at most one
    byte more than `data`: a longer file cannot match."""
    return _read_regular(path, len(data) + 1, listed=True) == data


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
        check_target(root, write=write)
        self.target = layout.generated_dir(root)
        self.write = write
        self.keep_new = keep_new  # checking: keep new bytes of added/changed files (the diff)
        self.staging = root / f"{_TMP_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        # the old tree, listed once before any worker forks: path -> regular file
        self.old, dirs = scan(self.target)
        if write:
            locked = [d for d in dirs if not _writable(os.path.join(self.target, d))]
            if locked:
                raise ConfigError([_problem(
                    f"{GENERATED_DIR}/{locked[0]}", "is read-only: the old tree could not "
                    "be removed", "make it writable (chmod -R u+w generated)")])

    def put_all(self, files: Iterable[tuple[str, bytes]]) -> Part:
        # plain str paths and os calls: this runs once per file of the tree
        changes, new = Changes(), {}
        old_root, into, old = str(self.target), _Tree(self.staging), self.old
        for rel, data in files:
            regular = old.get(rel)
            # a symbolic link, FIFO or the like in the old tree is replaced, never read
            same = None if regular is None else (
                regular and _same_bytes(os.path.join(old_root, rel), data))
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
        for rel, regular in self.old.items():
            if rel not in produced:
                # only regular files are kept: a link or FIFO goes whatever the scope
                (kept if regular and not scope.owns(rel) else changes.removed).append(rel)
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
            check_target(self.target.parent, write=True)  # nothing swapped under our feet
            _swap_in(self.staging, self.target)
        return changes

    def discard(self) -> None:
        """Remove the staging tree if this run made one and did not swap it in."""
        if os.path.isdir(self.staging) and not os.path.islink(self.staging):
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
    check_target(root, write=True)
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
            os.link(os.path.join(old_root, rel), dest, follow_symlinks=False)
        except OSError:
            shutil.copy2(os.path.join(old_root, rel), dest, follow_symlinks=False)


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

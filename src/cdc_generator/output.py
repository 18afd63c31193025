"""The one writer of `generated/`: atomic tree swap, pruning, freshness check, diff.

A run builds the complete new tree beside `generated/` (unchanged files are
hard links, so their times stay as they were) and swaps it in with one
`renameat2(RENAME_EXCHANGE)`: a run killed at any point leaves the old tree or
the new one. Nothing outside `generated/` and its transient siblings
`.generated.*` is touched.
"""

from __future__ import annotations

import ctypes
import ctypes.util
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


def read_tree(directory: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    if not directory.is_dir():
        return out
    base = len(str(directory)) + 1
    for dirpath, _dirnames, filenames in os.walk(directory):
        for name in filenames:
            full = os.path.join(dirpath, name)
            with open(full, "rb") as fh:
                out[full[base:].replace(os.sep, "/")] = fh.read()
    return out


def compare(desired: Mapping[str, bytes], existing: Mapping[str, bytes], scope: Scope) -> Changes:
    changes = Changes()
    for path, data in desired.items():
        old = existing.get(path)
        if old is None:
            changes.added.append(path)
        elif old != data:
            changes.changed.append(path)
        else:
            changes.unchanged.append(path)
    changes.removed = [p for p in existing if p not in desired and scope.owns(p)]
    for bucket in (changes.added, changes.changed, changes.removed, changes.unchanged):
        bucket.sort()
    return changes


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


def write_tree(root: Path, desired: Mapping[str, bytes], scope: Scope,
               existing: Mapping[str, bytes] | None = None) -> Changes:
    """Make `generated/` hold `desired` (within `scope`); return what changed."""
    recover(root)
    target = root / GENERATED_DIR
    if existing is None:
        existing = read_tree(target)
    changes = compare(desired, existing, scope)
    if not changes.any:
        return changes
    keep = [p for p in existing if not scope.owns(p) and p not in desired]
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
    made: set[str] = set()

    def parent_of(rel: str) -> Path:
        out = staging / rel
        parent = os.path.dirname(rel)
        if parent not in made:
            os.makedirs(out.parent, exist_ok=True)
            made.add(parent)
        return out

    for rel in (*changes.unchanged, *keep):
        dest = parent_of(rel)
        try:
            os.link(target / rel, dest)
        except OSError:
            shutil.copy2(target / rel, dest)
    for rel in (*changes.added, *changes.changed):
        with open(parent_of(rel), "wb") as fh:
            fh.write(desired[rel])
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
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)

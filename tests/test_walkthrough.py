"""README's command blocks run as written, in order, in a fresh copy of this repository.

The blocks are read from README.md, so the two cannot drift apart: every ```bash
block there is marked `<!-- walk-through: NAME -->` and run here, or marked
`<!-- walk-through: skip (why) -->`. The copy is a new git repository holding the
working tree; its `.venv` is made by the README's own setup line (pip fetches the
dependencies, from its cache when it can). The `dev-db` block runs in the
background, as in a terminal of its own, and is stopped the way Ctrl-C stops it:
SIGINT to its process group.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.test_precommit_hooks import GIT_ENV, commit_all, git
from tests.test_repo_hooks import VENV, copy_working_tree

REPO = Path(__file__).resolve().parent.parent
MARKED_BLOCK = re.compile(r"<!-- walk-through: (\S+)[^>]*-->\n```bash\n(.*?)```", re.DOTALL)

pytestmark = pytest.mark.postgres  # dev-db starts a real PostgreSQL


def readme_blocks() -> dict[str, str]:
    text = (REPO / "README.md").read_text()
    blocks = dict(MARKED_BLOCK.findall(text))
    assert text.count("```bash\n") == len(MARKED_BLOCK.findall(text)), (
        "every ```bash block in README.md is marked <!-- walk-through: NAME -->")
    return blocks


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = readme_blocks()
    assert set(blocks) == {"setup", "dev-db", "session", "skip"}


def shell_env() -> dict[str, str]:
    """A fresh terminal's: no virtualenv active, none of this test run's on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "GITHUB_ACTIONS") and not k.startswith("POSTGRES_")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV / "bin"]
    return env | GIT_ENV | {"PATH": os.pathsep.join(path), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def run_block(root: Path, block: str) -> subprocess.CompletedProcess[str]:
    """`block` as a shell runs it, stopping at the first command that fails."""
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block], cwd=root,
                          env=shell_env(), capture_output=True, text=True, timeout=900,
                          check=False)


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the working tree as a git repository, set up by the README's setup block."""
    root = copy_working_tree(tmp_path_factory.mktemp("walk") / "cdc-generator")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "a fresh clone")
    done = run_block(root, readme_blocks()["setup"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "generated/ already up to date" in done.stderr
    return root


def test_dev_db_without_its_extra_says_how_to_install_it(clone: Path) -> None:
    done = subprocess.run([".venv/bin/cdc-generator", "dev-db"], cwd=clone, env=shell_env(),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode in (1, 2), done.stderr
    assert "Traceback" not in done.stderr
    assert "internal error" not in done.stderr
    [command] = re.findall(r"install them with `([^`]+)` \(this checkout", done.stderr)
    assert "pip install 'cdc-generator[dev-db]'" in done.stderr, "and for the package"
    argv = shlex.split(command)
    assert argv[0].startswith(".venv/bin/python"), "this checkout's own interpreter"
    installed = subprocess.run(argv, cwd=clone, env=shell_env(), capture_output=True,
                               text=True, timeout=900, check=False)
    assert installed.returncode == 0, installed.stderr


def test_the_live_database_walk_through(clone: Path) -> None:
    blocks = readme_blocks()
    log = clone.parent / "dev-db.log"
    with log.open("w") as out:  # terminal 1
        dev_db = subprocess.Popen(["bash", "-e", "-c", blocks["dev-db"]], cwd=clone,
                                  env=shell_env(), stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while "Press Ctrl-C to stop." not in log.read_text():
            assert dev_db.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert (clone / ".dev-db.env").is_file()
        session = run_block(clone, blocks["session"])  # terminal 2
        assert session.returncode == 0, session.stdout + session.stderr
        shown = session.stdout
        assert re.search(r"^customer_b\.organizations +id ", shown, re.MULTILINE), shown
        assert "ledger_entries" in shown
        assert re.search(r"^\d+ checks: 0 failed", shown, re.MULTILINE), shown
        assert "services/accounting.yaml: added ledger_entries" in session.stderr
        os.killpg(dev_db.pid, signal.SIGINT)  # Ctrl-C in terminal 1
        assert dev_db.wait(timeout=60) == 0, log.read_text()
    finally:
        if dev_db.poll() is None:
            os.killpg(dev_db.pid, signal.SIGKILL)
            dev_db.wait()
    assert "stopping PostgreSQL" in log.read_text()
    assert not (clone / ".dev-db.env").exists(), "removed when dev-db stops"
    assert git(clone, "status", "--porcelain") == "", "the walk-through left nothing behind"

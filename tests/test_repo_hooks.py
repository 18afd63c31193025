"""This repository's own hooks (.pre-commit-config.yaml), run by real pre-commit in a
copy of the working tree: they work whether or not a virtualenv is active (its
tools are found through scripts/in-venv), and a bad reference is printed once.

mypy is skipped (SKIP=mypy): it is slow from a cold cache and runs the same way
as the other hooks, through scripts/in-venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_precommit_hooks import GIT_ENV, commit_all, git, status

REPO = Path(__file__).resolve().parent.parent
VENV = Path(sys.prefix)  # the environment running the tests: it has every tool
HOOKS = ["yamllint", "cdc-generator validate", "cdc-generator generate", "ruff"]


def copy_working_tree(dest: Path) -> Path:
    """Every file git knows or would add (the working tree's versions), symlinks kept."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source, target = REPO / name, dest / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    return dest


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = copy_working_tree(tmp_path_factory.mktemp("hooks") / "cdc-generator")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "the working tree")
    return root


def hook_env(root: Path, venv: str, skip: str = "mypy") -> dict[str, str]:
    """The environment of a commit with `venv` "active" ($VIRTUAL_ENV set, its bin/
    on PATH) or "not active" (neither: no cdc-generator on PATH)."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "GITHUB_ACTIONS")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV / "bin"]
    if venv == "active":
        env["VIRTUAL_ENV"] = str(VENV)
        path.insert(0, str(VENV / "bin"))
    return env | GIT_ENV | {"PATH": os.pathsep.join(path), "SKIP": skip,
                            "PRE_COMMIT_HOME": str(root.parent / "pre-commit-home"),
                            "PRE_COMMIT_COLOR": "never"}


def run_hooks(root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


@pytest.mark.parametrize("venv", ["not active", "active"])
def test_the_hooks_pass_with_or_without_an_active_venv(checkout: Path, venv: str) -> None:
    env = hook_env(checkout, venv)
    if venv == "not active":
        assert shutil.which("cdc-generator", path=env["PATH"]) is None
        (checkout / ".venv").symlink_to(VENV)  # the README's setup: python3.11 -m venv .venv
    try:
        done = run_hooks(checkout, env)
    finally:
        (checkout / ".venv").unlink(missing_ok=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [status(done, hook) for hook in HOOKS] == ["Passed"] * len(HOOKS)


def test_without_any_environment_the_hook_says_how_to_make_one(checkout: Path) -> None:
    done = run_hooks(checkout, hook_env(checkout, "not active"))  # and no .venv
    assert done.returncode == 1
    assert "set up the development environment first: python3.11 -m venv .venv" in done.stdout


def test_a_bad_reference_is_printed_once(checkout: Path) -> None:
    service = checkout / "services" / "directory.yaml"
    original = service.read_text()
    service.write_text(original.replace("server_group: asma", "server_group: asmaa"))
    (checkout / ".venv").symlink_to(VENV)
    try:  # the hooks that read the config, as in a commit of it
        done = run_hooks(checkout, hook_env(checkout, "not active",
                                            skip="mypy,ruff,yamllint,compile-schemas"))
    finally:
        (checkout / ".venv").unlink()
        service.write_text(original)
    assert done.returncode == 1
    assert (status(done, "cdc-generator validate"),
            status(done, "cdc-generator generate")) == ("Failed", "Failed")
    assert done.stdout.count("server group 'asmaa' does not exist") == 1, done.stdout
    assert "services/directory.yaml:3:1: server_group: " in done.stdout

"""The published hooks (.pre-commit-hooks.yaml), run by real pre-commit in a real git repo.

The hooks repository is built from the current working tree (not the last
commit), committed in a temporary git repo, and used by a temporary GitOps
repository holding this repository's config. pre-commit installs the hook
environment from it with pip once per test module (PRE_COMMIT_HOME is
temporary), which needs PyPI for the dependencies.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO, copy_repo_config, run_cli, tree

# what `pip install .` of the hooks repository needs, plus the hooks manifest
HOOKS_REPO_FILES = ["pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "src",
                    "schemas", "templates"]
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
DIRECTORY_PROD_SOURCE = "generated/pipelines/directory/prod/source-directory.yaml"


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=os.environ | GIT_ENV,
                          capture_output=True, text=True, check=True)
    return done.stdout


def commit_all(cwd: Path, message: str) -> str:
    git(cwd, "add", "-A")
    git(cwd, "commit", "-q", "--no-verify", "-m", message)
    return git(cwd, "rev-parse", "HEAD").strip()


@pytest.fixture(scope="module")
def hooks_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """This repository's working tree, as much as pre-commit needs, at a commit."""
    dest = tmp_path_factory.mktemp("hooks") / "cdc-generator"
    dest.mkdir()
    for name in HOOKS_REPO_FILES:
        source = REPO / name
        if source.is_symlink():
            (dest / name).symlink_to(os.readlink(source))
        elif source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns(
                "__pycache__", "*.egg-info", "*.pyc"))
        else:
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q", "-b", "main")
    return dest, commit_all(dest, "hooks under test")


@pytest.fixture(scope="module")
def pre_commit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def gitops(tmp_path: Path, hooks_repo: tuple[Path, str]) -> Path:
    """A GitOps repository using our hooks, with fresh generated/ committed."""
    root = copy_repo_config(tmp_path / "gitops", with_generated=False)
    done = run_cli("generate", "--root", str(root))
    assert done.returncode == 0, done.stderr
    path, rev = hooks_repo
    config = {"repos": [{"repo": str(path), "rev": rev,
                         "hooks": [{"id": "cdc-validate"}, {"id": "cdc-generate"}]}]}
    (root / ".pre-commit-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    (root / "README.md").write_text("# pipelines\n")
    git(root, "init", "-q", "-b", "main")
    commit_all(root, "config and generated pipelines")
    return root


def pre_commit(root: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | GIT_ENV | {"PRE_COMMIT_HOME": str(home), "PRE_COMMIT_COLOR": "never"}
    env.pop("GITHUB_ACTIONS", None)  # text output, whatever runs the tests
    argv = [sys.executable, "-m", "pre_commit", "run", "--color", "never"]
    return subprocess.run(
        [*argv, *(args or ("--all-files",))],
        cwd=root, env=env, capture_output=True, text=True, timeout=900, check=False,
    )


def status(done: subprocess.CompletedProcess[str], hook: str) -> str:
    """Passed / Failed / Skipped for one hook, from pre-commit's summary line."""
    match = re.search(rf"^{re.escape(hook)}\.+(?:\(no files to check\))?(\w+)$",
                      done.stdout, re.MULTILINE)
    assert match, done.stdout + done.stderr
    return match.group(1)


VALIDATE, GENERATE = "cdc-generator validate", "cdc-generator generate"


def test_fresh_config_passes(gitops: Path, pre_commit_home: Path) -> None:
    done = pre_commit(gitops, pre_commit_home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (status(done, VALIDATE), status(done, GENERATE)) == ("Passed", "Passed")
    assert git(gitops, "status", "--porcelain") == ""


def test_bad_config_fails_with_its_location(gitops: Path, pre_commit_home: Path) -> None:
    groups = gitops / "server-groups.yaml"
    lines = groups.read_text().splitlines(keepends=True)
    at = lines.index("    sink_tasks_max: 2\n")
    lines[at] = "    sink_tasks_max: two\n"
    groups.write_text("".join(lines))
    before = tree(gitops / "generated")
    done = pre_commit(gitops, pre_commit_home)
    assert done.returncode == 1
    assert (status(done, VALIDATE), status(done, GENERATE)) == ("Failed", "Failed")
    problem = (f"server-groups.yaml:{at + 1}:5: environments.prod.sink_tasks_max: "
               "expected an integer")
    assert done.stdout.count(problem) == 1, "one problem is printed once per commit attempt"
    assert "the cdc-validate hook (`cdc-generator validate`) lists them" in done.stdout
    assert tree(gitops / "generated") == before, "nothing is written from a bad config"


def test_stale_output_is_regenerated_and_fails(gitops: Path, pre_commit_home: Path) -> None:
    svc = gitops / "services" / "directory.yaml"
    svc.write_text(svc.read_text().replace("primary_key: code", "primary_key: iso_code"))
    git(gitops, "add", "-A")
    done = pre_commit(gitops, pre_commit_home)
    assert done.returncode == 1
    assert (status(done, VALIDATE), status(done, GENERATE)) == ("Passed", "Failed")
    assert "generated/ was out of date and has been regenerated" in done.stdout
    assert "iso_code" in (gitops / DIRECTORY_PROD_SOURCE).read_text()
    # the author adds what the hook wrote; then the commit goes through
    git(gitops, "add", "-A")
    again = pre_commit(gitops, pre_commit_home)
    assert again.returncode == 0, again.stdout


def test_new_files_alone_fail_too(gitops: Path, pre_commit_home: Path) -> None:
    """When regenerating only adds files, pre-commit's own modified-files check
    (`git diff`) sees nothing: the hook's exit status must say so."""
    missing = "generated/pipelines/directory/prod/sink-directory.yaml"
    git(gitops, "rm", "-q", missing)
    commit_all(gitops, "lose a generated file")
    done = pre_commit(gitops, pre_commit_home, "cdc-generate", "--all-files")
    assert done.returncode == 1, done.stdout
    assert status(done, GENERATE) == "Failed"
    assert (gitops / missing).is_file()
    assert git(gitops, "diff") == "", "nothing for `git diff` to show"
    assert git(gitops, "status", "--porcelain") == f"?? {missing}\n"


def test_hand_edit_to_generated_is_reverted(gitops: Path, pre_commit_home: Path) -> None:
    target = gitops / DIRECTORY_PROD_SOURCE
    original = target.read_text()
    target.write_text(original.replace('snapshot.mode: "initial"', 'snapshot.mode: "never"'))
    git(gitops, "add", "-A")
    done = pre_commit(gitops, pre_commit_home, "--files", DIRECTORY_PROD_SOURCE)
    assert done.returncode == 1
    assert status(done, GENERATE) == "Failed"
    assert status(done, VALIDATE) == "Skipped", "generated/ is not config"
    assert target.read_text() == original


def test_unrelated_files_skip_the_hooks(gitops: Path, pre_commit_home: Path) -> None:
    done = pre_commit(gitops, pre_commit_home, "--files", "README.md")
    assert done.returncode == 0
    assert (status(done, VALIDATE), status(done, GENERATE)) == ("Skipped", "Skipped")


def test_files_patterns() -> None:
    hooks = {h["id"]: h for h in yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())}
    assert {"cdc-validate", "cdc-generate"} <= set(hooks)
    config = ["server-groups.yaml", "services/a.yaml", "services/b.yml",
              "templates/source-pipeline.yaml", "schemas/service.schema.json"]
    other = ["README.md", "services/notes.txt", "deploy/flux/prod.yaml", "x/server-groups.yaml"]
    for hook in hooks.values():
        assert hook["pass_filenames"] is False
        assert hook["language"] == "python"
        pattern = re.compile(hook["files"])
        assert all(pattern.search(p) for p in config), hook["id"]
        assert not any(pattern.search(p) for p in other), hook["id"]
    assert re.search(hooks["cdc-generate"]["files"], DIRECTORY_PROD_SOURCE)
    assert not re.search(hooks["cdc-validate"]["files"], DIRECTORY_PROD_SOURCE)

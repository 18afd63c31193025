"""`cdc-generator diff`: what `generate` would change, as a unified diff, writing nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_repo_config, run_cli, tree

DIRECTORY_SOURCE = "generated/pipelines/directory/{env}/source-directory.yaml"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    done = run_cli("generate", "--root", str(root))
    assert done.returncode == 0, done.stderr
    return root


def rename_countries_key(root: Path) -> None:
    """An edit that changes directory's source connectors in every environment."""
    svc = root / "services" / "directory.yaml"
    text = svc.read_text()
    assert "primary_key: code" in text
    svc.write_text(text.replace("primary_key: code", "primary_key: iso_code"))


def diffed_files(diff: str) -> set[str]:
    return {line[len("+++ b/"):] for line in diff.splitlines() if line.startswith("+++ b/")}


def test_no_changes(repo: Path) -> None:
    done = run_cli("diff", "--root", str(repo))
    assert (done.returncode, done.stdout) == (0, "")
    assert "no changes" in done.stderr


def test_edited_service_shows_as_unified_diff(repo: Path) -> None:
    rename_countries_key(repo)
    before = tree(repo / "generated")
    done = run_cli("diff", "--root", str(repo))
    assert done.returncode == 1, "differences: exit 1, as generate --check"
    assert diffed_files(done.stdout) == {
        DIRECTORY_SOURCE.format(env="nonprod"), DIRECTORY_SOURCE.format(env="prod"),
    }
    assert f"--- a/{DIRECTORY_SOURCE.format(env='prod')}\n" in done.stdout
    assert "\n@@ " in done.stdout
    changed = [line for line in done.stdout.splitlines()
               if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))]
    assert changed, done.stdout
    assert any("iso_code" in line for line in changed if line.startswith("+"))
    assert "no changes" not in done.stderr
    assert tree(repo / "generated") == before, "diff writes nothing"


def test_environment_narrows_the_diff(repo: Path) -> None:
    rename_countries_key(repo)
    done = run_cli("diff", "--root", str(repo), "--environment", "prod")
    assert done.returncode == 1, done.stderr
    assert diffed_files(done.stdout) == {DIRECTORY_SOURCE.format(env="prod")}


def test_service_narrows_the_diff(repo: Path) -> None:
    rename_countries_key(repo)
    accounting = run_cli("diff", "--root", str(repo), "--service", "accounting")
    assert (accounting.returncode, accounting.stdout) == (0, "")
    assert "no changes" in accounting.stderr
    directory = run_cli("diff", "--root", str(repo), "--service", "directory",
                        "--environment", "nonprod")
    assert directory.returncode == 1
    assert diffed_files(directory.stdout) == {DIRECTORY_SOURCE.format(env="nonprod")}


def test_new_and_orphaned_files(repo: Path) -> None:
    orphan = repo / "generated/pipelines/directory/nonprod/leftover.yaml"
    orphan.write_text("kind: ConfigMap\n")
    (repo / "generated/pipelines/accounting/prod/sink-accounting-acme.yaml").unlink()
    done = run_cli("diff", "--root", str(repo))
    assert done.returncode == 1, done.stderr
    assert ("--- a/generated/pipelines/directory/nonprod/leftover.yaml\n+++ /dev/null\n"
            in done.stdout)
    assert ("--- /dev/null\n+++ b/generated/pipelines/accounting/prod/sink-accounting-acme.yaml\n"
            in done.stdout)
    # scoped to another service, the orphan is not this run's business
    scoped = run_cli("diff", "--root", str(repo), "--service", "accounting")
    assert "leftover.yaml" not in scoped.stdout
    assert "sink-accounting-acme.yaml" in scoped.stdout


def test_unknown_service_is_a_usage_error(repo: Path) -> None:
    done = run_cli("diff", "--root", str(repo), "--service", "directroy")
    assert done.returncode == 2
    assert "unknown service 'directroy'" in done.stderr
    assert "did you mean directory?" in done.stderr


def test_invalid_config_fails(repo: Path) -> None:
    svc = repo / "services" / "directory.yaml"
    svc.write_text(svc.read_text().replace("server_group: asma", "server_group: nowhere"))
    done = run_cli("diff", "--root", str(repo))
    assert done.returncode == 1
    assert "services/directory.yaml:" in done.stderr

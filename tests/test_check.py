"""`generate --check`, pruning and scoping on fresh, stale and orphaned trees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc_generator.cli import main
from tests.helpers import copy_repo_config, tree


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    assert main(["generate", "--root", str(root)]) == 0
    return root


def check(root: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["generate", "--check", "--root", str(root), "--format", "text", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_this_repository_is_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    root = Path(__file__).resolve().parent.parent
    code, _out, err = check(root, capsys)
    assert code == 0, err


def test_fresh(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = check(repo, capsys)
    assert (code, out) == (0, "")
    assert "up to date" in err


def test_stale_file_fails_with_diff(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    svc = repo / "services" / "directory.yaml"
    svc.write_text(svc.read_text().replace("primary_key: code", "primary_key: iso_code"))
    before = tree(repo / "generated")
    code, out, err = check(repo, capsys)
    assert code == 1
    assert "generated/pipelines/directory/nonprod/source-directory.yaml:" in err
    assert "stale" in err
    assert out.startswith("--- a/generated/pipelines/directory/")
    assert tree(repo / "generated") == before, "--check writes nothing"


def test_missing_file(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "generated/pipelines/accounting/prod/sink-accounting-acme.yaml").unlink()
    code, out, err = check(repo, capsys)
    assert code == 1
    assert "sink-accounting-acme.yaml: missing" in err
    assert "+++ b/generated/pipelines/accounting/prod/sink-accounting-acme.yaml" in out


def test_orphaned_files_are_reported_and_pruned(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    groups = repo / "server-groups.yaml"
    groups.write_text(groups.read_text().replace(
        "      - name: adopus_initech\n        customer: initech\n", ""))
    (repo / "generated" / "pipelines" / "retired" / "prod").mkdir(parents=True)
    (repo / "generated" / "pipelines" / "retired" / "prod" / "source-retired.yaml").write_text("x")
    code, _out, err = check(repo, capsys)
    assert code == 1
    assert "source-accounting-initech.yaml: orphaned" in err
    assert "source-retired.yaml: orphaned" in err
    assert main(["generate", "--root", str(repo)]) == 0
    files = tree(repo / "generated")
    assert not [p for p in files if "initech" in p or "retired" in p]
    assert check(repo, capsys)[0] == 0


def test_json_format_is_stable(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "generated/pipelines/directory/prod/kustomization.yaml").write_text("stale\n")
    capsys.readouterr()
    assert main(["generate", "--check", "--root", str(repo), "--format", "json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["version"] == 1
    assert payload["ok"] is False
    assert payload["result"]["files"]["changed"] == [
        "generated/pipelines/directory/prod/kustomization.yaml"]
    assert payload["problems"][0]["file"] == "generated/pipelines/directory/prod/kustomization.yaml"


def test_scoped_generate_leaves_the_rest_alone(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = repo / "generated/pipelines/accounting/prod/source-accounting-acme.yaml"
    other.write_text("hand edit\n")
    prod_path = repo / "generated/pipelines/directory/prod/source-directory.yaml"
    prod_before = prod_path.read_bytes()
    prod_stat = prod_path.stat()
    svc = repo / "services" / "directory.yaml"
    svc.write_text(svc.read_text().replace("primary_key: code", "primary_key: iso"))
    assert main(["generate", "--root", str(repo), "--service", "directory",
                 "--environment", "nonprod"]) == 0
    assert other.read_text() == "hand edit\n"
    nonprod = (repo / "generated/pipelines/directory/nonprod/source-directory.yaml").read_text()
    assert "countries:iso" in nonprod  # regenerated
    # prod is out of scope: the same file, not rewritten
    assert prod_path.read_bytes() == prod_before
    assert b"countries:code" in prod_before
    after = prod_path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (prod_stat.st_ino, prod_stat.st_mtime_ns)
    code, _out, err = check(repo, capsys, "--service", "directory", "--environment", "nonprod")
    assert code == 0, err
    assert check(repo, capsys, "--service", "accounting")[0] == 1


def test_unknown_service_is_a_usage_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--root", str(repo), "--service", "directori"]) == 2
    assert "unknown service 'directori'; did you mean directory?" in capsys.readouterr().err


def test_no_diff_without_check_is_a_usage_error(repo: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "--root", str(repo), "--no-diff"]) == 2
    assert "--no-diff applies to --check only" in capsys.readouterr().err

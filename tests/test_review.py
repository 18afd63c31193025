"""`plan --since REV`: what merging changes, from generated/ and git alone."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.helpers import copy_repo_config, run_cli
from tests.test_hints import run_shown


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"})


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = copy_repo_config(tmp_path / "repo", with_generated=True)
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "base")
    return root


def test_added_table_and_removed_tenant(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service = repo / "services" / "accounting.yaml"
    service.write_text(service.read_text() + "    - schema: public\n      name: refunds\n"
                                             "      primary_key: id\n")
    groups = repo / "server-groups.yaml"
    groups.write_text(groups.read_text().replace(
        "      - name: adopus_initech\n        customer: initech\n", ""))
    assert run_cli("generate", "--root", str(repo)).returncode == 0
    summary = repo / "summary.md"
    env = {**os.environ, "GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    done = run_cli("plan", "--since", "HEAD", "--root", str(repo), "--format", "json", env=env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)["result"]
    assert ["nonprod", "source-accounting-initech"] in result["removed"]
    assert ["prod", "sink-accounting-initech"] in result["removed"]
    assert {"environment": "nonprod", "table": "public.refunds",
            "connectors": ["source-accounting-acme", "source-accounting-globex"]} \
        in result["backfills"]
    assert {"environment": "prod", "slot": "cdc_accounting_initech_prod",
            "connector": "source-accounting-initech"} in result["slots"]
    assert not any(b["table"].startswith("cdc.") for b in result["backfills"])
    text = summary.read_text()
    assert "| removed | nonprod | `source-accounting-initech` |" in text
    assert "- prod: `public.refunds` in 2 connector(s)" in text
    assert "- nonprod: `cdc_accounting_initech_nonprod` (was `source-accounting-initech`)" \
        in text
    # the commands the summary shows run: no usage error, no crash (the reader's
    # Connect URL filled in
    # and the servers' variables set, to a port where no database listens)
    closed = {**os.environ, **{f"POSTGRES_{server}_{part}": value
                               for server in ("ADOPUS", "ASMA")
                               for part, value in (("HOST", "127.0.0.1"), ("PORT", "9"),
                                                   ("USER", "u"), ("PASSWORD", "p"))}}
    shown = run_shown(repo, text.replace("--connect-url URL", "--connect-url http://127.0.0.1:9"),
                      env=closed)
    assert len(shown) == 6  # apply for the backfills and the slots, plan, per environment


def test_many_tenants_make_a_costly_backfill(repo: Path) -> None:
    groups = repo / "server-groups.yaml"
    tenants = "".join(f"      - name: adopus_t{n}\n        customer: t{n}\n" for n in range(10))
    groups.write_text(groups.read_text().replace(
        "      - name: adopus_initech\n        customer: initech\n",
        "      - name: adopus_initech\n        customer: initech\n" + tenants))
    assert run_cli("generate", "--root", str(repo)).returncode == 0
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tenants")
    service = repo / "services" / "accounting.yaml"
    service.write_text(service.read_text() + "    - schema: public\n      name: refunds\n"
                                             "      primary_key: id\n")
    assert run_cli("generate", "--root", str(repo)).returncode == 0
    done = run_cli("plan", "--since", "HEAD", "--root", str(repo), "--environment", "prod",
                   "--format", "github")
    assert done.returncode == 0
    assert "::warning title=cdc-generator::costly: public.refunds is backfilled in 13 " \
           "connectors (prod)" in done.stdout


def test_an_unknown_revision_is_a_clean_error(repo: Path) -> None:
    done = run_cli("plan", "--since", "no-such-rev", "--root", str(repo))
    assert done.returncode == 1
    assert "fetch-depth: 0" in done.stderr
    assert "Traceback" not in done.stderr

""".github/workflows/: valid for GitHub, by check-jsonschema's built-in workflow schema.

The schema is the one check-jsonschema vendors from SchemaStore
(`--builtin-schema vendor.github-workflows`, the version pinned in pyproject.toml);
the check-github-workflows pre-commit hook runs the same command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import REPO

WORKFLOWS = REPO / ".github" / "workflows"


def check(*paths: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         "--output-format", "json", *map(str, paths)],
        capture_output=True, text=True, check=False, timeout=120)
    report: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, report


def workflows() -> list[Path]:
    found = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert found, "no workflows in .github/workflows"
    return found


def test_workflows_match_the_github_workflow_schema() -> None:
    code, report = check(*workflows())
    assert code == 0, json.dumps(report["errors"] + report["parse_errors"], indent=2)
    assert report["status"] == "ok"


@pytest.mark.parametrize(("good", "bad", "where", "says"), [
    # a number where GitHub wants a runner label
    ("runs-on: ubuntu-latest", "runs-on: 42", "['runs-on']", "42 is not of type 'string'"),
    # a misspelt key of a step
    ("- uses: actions/checkout@v4", "- use: actions/checkout@v4", ".steps[0]",
     "'uses' is a required property"),
])
def test_a_broken_workflow_fails_with_its_path(tmp_path: Path, good: str, bad: str,
                                              where: str, says: str) -> None:
    broken = tmp_path / "ci.yml"
    text = (WORKFLOWS / "ci.yml").read_text()
    assert good in text
    broken.write_text(text.replace(good, bad, 1))
    code, report = check(broken)
    assert code == 1
    assert {e["filename"] for e in report["errors"]} == {str(broken)}
    deep = [e["best_deep_match"] for e in report["errors"] if e.get("best_deep_match")]
    assert [d for d in deep if d["path"].startswith("$.jobs.") and d["path"].endswith(where)
            and says in d["message"]], json.dumps(report["errors"], indent=2)

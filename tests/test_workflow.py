"""The CI workflow is valid YAML, and every job runs a nox session that exists."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


def _nox_sessions() -> set[str]:
    out = subprocess.run(
        [sys.executable, "-m", "nox", "--list", "--noxfile", str(REPO / "noxfile.py")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    return set(re.findall(r"^[*-] (\S+)", out, flags=re.MULTILINE))


def _invoked_sessions(job: dict[str, Any]) -> set[str]:
    matrix = job.get("strategy", {}).get("matrix", {}).get("session", [])
    found: set[str] = set()
    for step in job.get("steps", []):
        command = step.get("run", "")
        for name in re.findall(r"nox -s (\S+)", command):
            found.update(matrix if name == "${{" else [name])
    return found


def test_every_job_runs_an_existing_nox_session() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    sessions = _nox_sessions()
    assert {"lint", "tests", "check", "e2e"} <= sessions
    invoked: set[str] = set()
    for name, job in workflow["jobs"].items():
        used = _invoked_sessions(job)
        assert used, f"job {name} runs no nox session"
        invoked |= used
    assert invoked <= sessions, invoked - sessions
    assert {"lint", "tests", "check", "e2e"} <= invoked


def test_workflow_runs_on_pull_requests_and_pushes() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    triggers = workflow[True]  # YAML 1.1 reads the key `on` as true
    assert "pull_request" in triggers
    assert "push" in triggers

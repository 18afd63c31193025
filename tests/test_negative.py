"""Negative folders: a bad config in, exit code 1 and the located message out.

Each tests/negative/<case>/ holds the config files and `expected.txt`: every
line of it must appear in the command's error output.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdc_generator.cli import main
from tests.helpers import NEGATIVE, run_cli

CASES = sorted(p.name for p in NEGATIVE.iterdir() if (p / "expected.txt").is_file())


def test_enough_distinct_bad_inputs() -> None:
    assert len(CASES) >= 15


@pytest.mark.parametrize("command", [["generate"], ["validate"], ["generate", "--check"]])
@pytest.mark.parametrize("case", CASES)
def test_bad_config(case: str, command: list[str], tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    shutil.copytree(NEGATIVE / case, root, ignore=shutil.ignore_patterns("expected.txt"))
    code = main([*command, "--root", str(root), "--format", "text"])
    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert "Traceback" not in stderr
    for line in (NEGATIVE / case / "expected.txt").read_text().splitlines():
        assert line in stderr, f"{line!r} not in:\n{stderr}"
    assert not (root / "generated").exists(), "nothing may be written for a bad config"
    assert not any(p.name.startswith(".generated") for p in root.iterdir())


@pytest.mark.parametrize("case", ["literal-password", "several-problems-at-once",
                                  "yaml-syntax-error"])
def test_secret_values_are_not_echoed(case: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    shutil.copytree(NEGATIVE / case, root, ignore=shutil.ignore_patterns("expected.txt"))
    result = run_cli("validate", "--root", str(root))  # a real process: exit code, no trace
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "secret\n" not in result.stderr + result.stdout

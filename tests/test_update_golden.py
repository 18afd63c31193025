"""scripts/update_golden.py: shows each case's diff, and writes only with --accept."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from scripts import update_golden

from tests.helpers import GOLDEN, tree

CASE = "per-tenant"
SOURCE = "pipelines/accounting/dev/source-accounting-acme.yaml"


@pytest.fixture
def golden(tmp_path: Path) -> Path:
    """A copy of one golden case whose expected/ is out of date in three ways."""
    root = tmp_path / "golden"
    shutil.copytree(GOLDEN / CASE, root / CASE)
    expected = root / CASE / "expected"
    source = expected / SOURCE
    source.write_text(source.read_text().replace('snapshot.mode: "initial"',
                                                 'snapshot.mode: "never"'))
    (expected / "pipelines/accounting/dev/stray.yaml").write_text("kind: Stray\n")
    (expected / "pipelines/accounting/dev/kustomization.yaml").unlink()
    return root


def test_shows_the_diff_and_writes_nothing(golden: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    before = tree(golden)
    assert update_golden.main([], golden=golden) == 1
    out, err = capsys.readouterr()
    shown = f"golden/{CASE}/expected"
    assert f"--- a/{shown}/{SOURCE}\n+++ b/{shown}/{SOURCE}\n" in out
    assert '-    snapshot.mode: "never"\n+    snapshot.mode: "initial"\n' in out
    assert f"--- a/{shown}/pipelines/accounting/dev/stray.yaml\n+++ /dev/null\n" in out
    assert (f"--- /dev/null\n+++ b/{shown}/pipelines/accounting/dev/kustomization.yaml\n"
            in out)
    assert f"{CASE}: differs (not written; --accept writes it)" in err
    assert tree(golden) == before


def test_accept_writes_exactly_the_new_output(golden: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert update_golden.main(["--accept", CASE], golden=golden) == 0
    assert tree(golden / CASE / "expected") == tree(GOLDEN / CASE / "expected")
    capsys.readouterr()
    assert update_golden.main([], golden=golden) == 0
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"{CASE}: unchanged\n")


def test_an_unknown_case_is_a_usage_error(golden: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        update_golden.main(["nosuch"], golden=golden)
    assert exited.value.code == 2

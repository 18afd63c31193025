"""Golden folders: config in, expected manifests out, compared byte for byte.

After an intended change, `python scripts/update_golden.py` prints each case's
diff; `--accept` writes it. Review that diff like code.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from cdc_generator.cli import main
from cdc_generator.config.model import GroupType, Isolation
from cdc_generator.config.repo import load_config
from tests.helpers import GOLDEN, tree

CASES = sorted(p.name for p in GOLDEN.iterdir() if (p / "input").is_dir())


def test_the_cases_cover_every_pattern() -> None:
    """Between them the cases' configs, as the product reads them, use every group
    type and, for db-shared groups, every isolation."""
    patterns = {(g.type, g.isolation if g.type is GroupType.DB_SHARED else None)
                for case in CASES for g in load_config(GOLDEN / case / "input").server_groups}
    assert patterns == {(GroupType.DB_PER_TENANT, None)} | {
        (GroupType.DB_SHARED, isolation) for isolation in Isolation}


@pytest.mark.parametrize("case", CASES)
def test_golden(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "repo"
    shutil.copytree(GOLDEN / case / "input", root)
    assert main(["generate", "--root", str(root)]) == 0
    produced = tree(root / "generated")
    expected = tree(GOLDEN / case / "expected")
    assert expected, f"{case} has no expected output"
    assert sorted(produced) == sorted(expected)
    for path, data in expected.items():
        assert produced[path].decode() == data.decode(), path
    # a second run writes nothing and says so
    assert main(["generate", "--root", str(root)]) == 0
    assert "nothing written" in capsys.readouterr().err
    assert main(["generate", "--root", str(root), "--check"]) == 0


@pytest.mark.parametrize("case", CASES)
def test_output_ignores_caller_environment(case: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Placeholders are never resolved at generation time, whatever is exported."""
    for name in ("POSTGRES_ASMA_HOST", "POSTGRES_PASSWORD", "ADOPUS_PASSWORD",
                 "BILLING_PASSWORD", "POSTGRES_SINK_HOST", "SINK_PROD_PASSWORD"):
        monkeypatch.setenv(name, f"leaked-{name.lower()}")
    root = tmp_path / "repo"
    shutil.copytree(GOLDEN / case / "input", root)
    assert main(["generate", "--root", str(root)]) == 0
    produced = tree(root / "generated")
    assert produced == tree(GOLDEN / case / "expected")
    assert not any(b"leaked-" in data for data in produced.values())
    text = b"".join(produced.values())
    references = sum(text.count(ref) for ref in (b"${env:", b"${dir:", b"${secrets:"))
    assert references, "the secrets stay references, resolved by Kafka Connect"

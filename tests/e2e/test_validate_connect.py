"""`cdc-generator validate --connect-url URL` against the real worker.

The worker has the Debezium PostgreSQL connector but (unless $CDC_E2E_JDBC_SINK_DIR
adds it) not the Debezium JDBC sink: sources validate clean, and every sink is reported
as a plugin the cluster lacks, with exit code 1. That is what a cluster without the
sink plugin would answer, so the test says so rather than hiding it.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from cdc_generator import cli, connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, jdbc_sink_dir
from .stack import REPO_ROOT, Stack
from .test_generated_sources import BROKEN_DDL, BROKEN_SOURCE, broken_root

pytestmark = pytest.mark.e2e

NOT_INSTALLED = f"connector plugin {pl.SINK_CLASS} is not installed"


def run_validate(capsys: pytest.CaptureFixture[str], root: Path, url: str,
                 *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with contextlib.chdir(root):  # as in CI: run in the repository root
        code = cli.main(["validate", "--connect-url", url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def repo_connectors() -> tuple[list[str], list[str]]:
    connectors = connect.load_generated(REPO_ROOT, environment=ENVIRONMENT)
    return ([c.path for c in pl.sources(connectors)], [c.path for c in pl.sinks(connectors)])


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_repo_output_on_the_real_worker(repo_sources: pl.RunningSources,
                                        capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    sources, sinks = repo_connectors()
    assert sources
    assert sinks
    code, out, err = run_validate(capsys, REPO_ROOT, repo_sources.stack.connect_url,
                                  "--environment", ENVIRONMENT, "--format", fmt)
    if jdbc_sink_dir() is not None:  # the sink plugin is installed: all clean
        assert code == 0, out + err
        return
    assert code == 1, out + err
    if fmt == "text":
        for path in sources:
            assert f"{path}: ok\n" in err
        for path in sinks:
            assert f"{path}: 1 problem(s)\n" in err
            assert f"{path}: {NOT_INSTALLED} on the Kafka Connect cluster\n" in err
        assert f"{len(sinks)} problem(s) found" in err
    elif fmt == "json":
        payload = json.loads(out)
        assert payload["ok"] is False
        assert payload["command"] == "validate --connect-url"
        assert sorted(p["file"] for p in payload["problems"]) == sorted(sinks)
        assert all(NOT_INSTALLED in p["message"] for p in payload["problems"])
        assert all(p["hint"] for p in payload["problems"])
    else:
        lines = out.splitlines()
        assert len(lines) == len(sinks)
        for path, line in zip(sorted(sinks), sorted(lines), strict=True):
            assert line.startswith(f"::error file={path},title=cdc-generator::{NOT_INSTALLED}")


def test_sources_only_validate_clean(repo_sources: pl.RunningSources,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    """--service picks one service; its sources pass the worker's own validation."""
    sources = pl.sources(connect.load_generated(REPO_ROOT, environment=ENVIRONMENT,
                                                service="directory"))
    assert pl.sinks(connect.load_generated(REPO_ROOT, environment=ENVIRONMENT,
                                           service="directory"))
    assert connect.validate_all(repo_sources.stack.connect_url, sources) == []
    code, _out, err = run_validate(capsys, REPO_ROOT, repo_sources.stack.connect_url,
                                   "--environment", ENVIRONMENT, "--service", "directory",
                                   "--format", "text")
    assert f"{sources[0].path}: ok\n" in err
    assert code == (0 if jdbc_sink_dir() is not None else 1)


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_broken_config_reports_file_line_and_key(
        shared_stack: Stack, pg_server: localpg.LocalPostgres, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    root = broken_root(tmp_path, "plugin.name: pgoutput", "plugin.name: wal2json")
    text = (root / BROKEN_SOURCE).read_text()
    line = text.splitlines().index("    plugin.name: wal2json") + 1
    with pl.databases(pg_server, {"e2e_broken_db": BROKEN_DDL}):
        code, out, err = run_validate(capsys, root, shared_stack.connect_url,
                                      "--service", "e2ebroken", "--format", fmt)
    assert code == 1, out + err
    if fmt == "text":
        assert f"{BROKEN_SOURCE}:{line}:5: spec.config.plugin.name: " in err
    elif fmt == "json":
        problems = [p for p in json.loads(out)["problems"] if p["file"] == BROKEN_SOURCE]
        assert [(p["line"], p["col"], p["key_path"]) for p in problems] == [
            (line, 5, "spec.config.plugin.name")]
    else:
        assert f"::error file={BROKEN_SOURCE},line={line},col=5,title=cdc-generator::" \
               "spec.config.plugin.name: " in out


def test_unreachable_worker_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    from .stack import free_port

    code, out, err = run_validate(capsys, REPO_ROOT, f"http://127.0.0.1:{free_port()}",
                                  "--environment", ENVIRONMENT, "--format", "text")
    assert code == 1, out + err
    assert "cannot reach Kafka Connect at http://127.0.0.1:" in err
    assert "Traceback" not in err

"""`cdc-generator validate --connect-url URL` against the real worker, which has both
Debezium plugins the deployed KafkaConnect builds its image with: the repository's
generated sources and sinks validate clean; a broken one is reported with file, line
and key; an unreachable worker is a clean error."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from cdc_generator import cli, connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, Pipelines
from .stack import REPO_ROOT, Stack
from .test_broken_output import BROKEN_DDL, BROKEN_SOURCE, broken_root

pytestmark = pytest.mark.e2e


def run_validate(capsys: pytest.CaptureFixture[str], root: Path, url: str,
                 *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    with contextlib.chdir(root):  # as in CI: run in the repository root
        code = cli.main(["validate", "--connect-url", url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("fmt", ["text", "json", "github"])
def test_repo_output_on_the_real_worker(pipelines: Pipelines,
                                        capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    connectors = connect.load_generated(REPO_ROOT, environment=ENVIRONMENT)
    assert pl.sources(connectors)
    assert pl.sinks(connectors)
    code, out, err = run_validate(capsys, REPO_ROOT, pipelines.running.stack.connect_url,
                                  "--environment", ENVIRONMENT, "--format", fmt)
    assert code == 0, out + err
    if fmt == "text":
        for connector in connectors:
            assert f"{connector.path}: ok\n" in err
    elif fmt == "json":
        payload = json.loads(out)
        assert payload["ok"] is True
        assert payload["problems"] == []
    else:
        assert out == ""


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

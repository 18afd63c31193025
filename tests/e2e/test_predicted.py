"""A connector that cannot start fails, on the real engine, for the reason `preflight`
gave before it was deployed.

Each case breaks one thing a generated source needs (its publication, the password),
runs `preflight` the way a user would before deploying, then submits the generated
connector to the worker: what preflight says fails and why the worker will not run it
(its refusal of the config on create, or the FAILED task's trace) name the same cause.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT
from .scenarios import E2E_SINK, PG_SERVER_BLOCK, write_config
from .stack import ConnectorFailedError, Stack, StackError

pytestmark = pytest.mark.e2e

GROUPS = f"""\
environments:
  nonprod:
{E2E_SINK}server_groups:
  - name: e2epred
    server_group_type: db-per-tenant
    service: e2epred
    server: {PG_SERVER_BLOCK}
    databases:
      - {{name: e2e_pred_a, customer: a}}
"""
SERVICE = """\
service: e2epred
server_group: e2epred
source:
  type: postgres
  tables:
    - {schema: public, name: items, primary_key: id}
"""


@pytest.fixture(scope="module")
def predicted(shared_stack: Stack, pg_server: localpg.LocalPostgres,
              sink_pg: localpg.LocalPostgres, e2e_env: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory
              ) -> Iterator[tuple[Path, connect.GeneratedConnector]]:
    root = write_config(tmp_path_factory.mktemp("predicted") / "repo", groups=GROUPS,
                        services={"e2epred": SERVICE})
    source = next(c for c in connect.load_generated(root, environment=ENVIRONMENT)
                  if c.connector_class.endswith("PostgresConnector"))
    ddl = "CREATE TABLE public.items (id int PRIMARY KEY, label text);"
    with pl.databases(pg_server, {"e2e_pred_a": ddl}), pl.databases(sink_pg, {"e2epred": ""}):
        yield root, source
        with contextlib.suppress(Exception):
            shared_stack.delete(source.name)
        pl.drop_slot(pg_server, "e2e_pred_a", source.config["slot.name"])


def preflight(root: Path, env: dict[str, str]) -> list[dict[str, str]]:
    """`cdc-generator preflight` as a user runs it: what it says fails (its failing
    checks, or the problem that stopped it, such as a refused login)."""
    done = subprocess.run(
        [sys.executable, "-m", "cdc_generator", "preflight", "--service", "e2epred",
         "--environment", ENVIRONMENT, "--root", str(root), "--format", "json"],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    envelope = json.loads(done.stdout)
    if envelope["result"] is None:
        return [{"check": "connect", "message": p["message"], "fix": p["hint"]}
                for p in envelope["problems"]]
    return [c for c in envelope["result"]["checks"] if c["status"] == "fail"]


def failed_trace(stack: Stack, connector: connect.GeneratedConnector,
                 config: dict[str, str]) -> str:
    """Why the worker will not run the connector: its refusal of the config (Connect
    validates it on create, the connector connecting) or the FAILED task's trace."""
    try:
        stack.create(connector.name, config)
    except StackError as refused:
        return str(refused)
    try:
        with pytest.raises(ConnectorFailedError) as failed:
            stack.wait_running(connector.name, timeout=90)
        return str(failed.value)
    finally:
        stack.delete(connector.name)


def test_a_missing_publication(predicted: tuple[Path, connect.GeneratedConnector],
                               shared_stack: Stack, e2e_env: dict[str, str]) -> None:
    root, source = predicted
    publication = source.config["publication.name"]
    failing = preflight(root, e2e_env)
    assert [c["check"] for c in failing] == ["publication"], failing
    assert publication in failing[0]["message"]
    assert f'CREATE PUBLICATION "{publication}"' in failing[0]["fix"]
    trace = failed_trace(shared_stack, source, source.rest_config())
    # Debezium's words (publication.autocreate.mode: disabled, as generated)
    assert "Publication autocreation is disabled, please create one" in trace, trace


def test_a_wrong_password(predicted: tuple[Path, connect.GeneratedConnector],
                          shared_stack: Stack, pg_server: localpg.LocalPostgres,
                          sink_pg: localpg.LocalPostgres, e2e_env: dict[str, str]) -> None:
    root, source = predicted
    pl.apply_generated_sql(pg_server, sink_pg, root, environment=ENVIRONMENT)
    wrong = "not-" + e2e_env["CDC_E2E_PG_PASSWORD"]
    failing = preflight(root, {**e2e_env, "CDC_E2E_PG_PASSWORD": wrong})
    assert len(failing) == 1, failing
    reason = f'password authentication failed for user "{e2e_env["CDC_E2E_PG_USER"]}"'
    assert reason in failing[0]["message"], failing
    assert wrong not in json.dumps(failing)
    # the worker resolves ${env:CDC_E2E_PG_PASSWORD}; here the value it would resolve to
    config = {**source.rest_config(), "database.password": wrong}
    trace = failed_trace(shared_stack, source, config)
    assert reason in trace, trace

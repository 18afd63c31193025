"""`secrets: {provider: directory, path: ...}` on the real engine: the worker reads every
${VAR} of the config from a file in a directory (Kafka's DirectoryConfigProvider, as
deploy/connect/secrets/directory/ mounts a Secret), and the pipeline moves the data."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import running_pipelines
from .reconcile import Expectation, wait_equal
from .scenarios import E2E_SINK, PG_SERVER_BLOCK, write_config
from .stack import Stack

pytestmark = pytest.mark.e2e

SERVICE = """\
service: e2esecf
server_group: e2esecf
source:
  type: postgres
  tables:
    - {schema: public, name: items, primary_key: id}
"""
EXPECT = [Expectation("e2esecf", "e2e_secf_a", "public.items", "e2esecf", "a.items", ("id",))]


def groups(secrets: Path) -> str:
    return f"""\
environments:
  nonprod:
    secrets: {{provider: directory, path: {secrets}}}
{E2E_SINK}server_groups:
  - name: e2esecf
    server_group_type: db-per-tenant
    service: e2esecf
    server: {PG_SERVER_BLOCK}
    databases:
      - {{name: e2e_secf_a, customer: a}}
"""


@pytest.fixture(scope="module")
def running(shared_stack: Stack, pg_server: localpg.LocalPostgres,
            sink_pg: localpg.LocalPostgres, e2e_env: dict[str, str],
            tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[list[connect.GeneratedConnector]]:
    secrets = tmp_path_factory.mktemp("secretfiles")
    # what a mounted Secret looks like: one file per key
    for name, value in e2e_env.items():
        if name.startswith(("CDC_E2E_PG_", "CDC_E2E_SINK_")):
            (secrets / name).write_text(value)
    root = write_config(tmp_path_factory.mktemp("secf") / "repo", groups=groups(secrets),
                        services={"e2esecf": SERVICE})
    ddl = ("CREATE TABLE public.items (id int PRIMARY KEY, label text);"
           "INSERT INTO public.items SELECT g, 'seed' FROM generate_series(1, 25) g;")
    with running_pipelines(shared_stack, pg_server, sink_pg, roots=[root],
                           ddl={"e2e_secf_a": ddl}, sink_dbs=["e2esecf"], sink_ddl={}) as running:
        yield running.connectors


def test_every_setting_comes_from_a_file(running: list[connect.GeneratedConnector],
                                         pg_server: localpg.LocalPostgres,
                                         sink_pg: localpg.LocalPostgres) -> None:
    source = next(c for c in running if c.name.startswith("source-"))
    sink = next(c for c in running if c.name.startswith("sink-"))
    assert source.config["database.password"].startswith("${dir:/")
    assert source.config["database.password"].endswith(":CDC_E2E_PG_PASSWORD}")
    assert sink.config["connection.url"].startswith("jdbc:postgresql://${dir:/")
    assert not [v for c in running for v in c.config.values() if "${env:" in v]
    pl.execute(pg_server, "e2e_secf_a",
               "INSERT INTO public.items SELECT g, 'live' FROM generate_series(26, 40) g",
               "DELETE FROM public.items WHERE id = 3")
    wait_equal(pg_server, sink_pg, EXPECT, lag=lambda: 0, timeout=90, what="secrets from files")

"""Broken generated output on the real engine fails in words that name the generated
file: a broken template (a wrong plugin.name; a table dropped from
table.include.list) is reported with file, line and key by the worker's validate
endpoint, or with file and table when the data does not arrive."""

from __future__ import annotations

from pathlib import Path

import pytest

import cdc_generator
from cdc_generator import connect, localpg

from . import pipelines as pl
from .scenarios import write_config
from .stack import Stack

pytestmark = pytest.mark.e2e

BUILTIN_TEMPLATES = Path(cdc_generator.__file__).parent / "templates"

K = pl.key


# --------------------------------------------------------------------------- broken output

BROKEN_GROUPS = """\
environments:
  nonprod: {}
server_groups:
  - name: e2ebroken
    server_group_type: db-shared
    service: e2ebroken
    server: {type: postgres, host: "${CDC_E2E_PG_HOST}", port: "${CDC_E2E_PG_PORT}",
             user: "${CDC_E2E_PG_USER}", password: "${CDC_E2E_PG_PASSWORD}"}
    databases:
      - name: e2e_broken_db
"""
BROKEN_SERVICE = {"e2ebroken": """\
    service: e2ebroken
    server_group: e2ebroken
    source:
      type: postgres
      tables:
        - {schema: public, name: kept, primary_key: id}
        - {schema: public, name: dropped, primary_key: id}
    """}
BROKEN_DDL = """
    CREATE TABLE public.kept (id int PRIMARY KEY);
    CREATE TABLE public.dropped (id int PRIMARY KEY);
    INSERT INTO public.kept VALUES (1);
    INSERT INTO public.dropped VALUES (1);
"""
BROKEN_SOURCE = "generated/pipelines/e2ebroken/nonprod/source-e2ebroken.yaml"


def broken_root(tmp_path: Path, old: str, new: str) -> Path:
    """A config whose templates/ is the built-in one with ``old`` replaced by ``new``."""
    source = (BUILTIN_TEMPLATES / "source-pipeline.yaml").read_text()
    assert old in source, f"the built-in source template no longer contains {old!r}"
    templates = {"source-pipeline.yaml": source.replace(old, new),
                 "sink-pipeline.yaml": (BUILTIN_TEMPLATES / "sink-pipeline.yaml").read_text()}
    return write_config(tmp_path / "repo", templates=templates, groups=BROKEN_GROUPS,
                        services=BROKEN_SERVICE)


def test_broken_plugin_name_is_reported_with_file_line_and_key(
        shared_stack: Stack, pg_server: localpg.LocalPostgres, tmp_path: Path) -> None:
    root = broken_root(tmp_path, "plugin.name: pgoutput", "plugin.name: pgoutptu")
    (connector,) = pl.sources(connect.load_generated(root, environment="nonprod"))
    with pl.databases(pg_server, {"e2e_broken_db": BROKEN_DDL}):
        problems = connect.validate_connector(shared_stack.connect_url, connector)
    line = connector.text.splitlines().index("    plugin.name: pgoutptu") + 1
    assert [(p.file, p.line, p.key_path) for p in problems] == [
        (BROKEN_SOURCE, line, "spec.config.plugin.name")], problems
    assert "plugin.name" in problems[0].message
    assert "pgoutput" in problems[0].message
    with pytest.raises(AssertionError, match=rf"{BROKEN_SOURCE}:{line}:5: spec.config.plugin"):
        pl.assert_valid(shared_stack.connect_url, [connector])


def test_table_missing_from_include_list_names_file_and_table(
        shared_stack: Stack, pg_server: localpg.LocalPostgres, sink_pg: localpg.LocalPostgres,
        tmp_path: Path) -> None:
    # keep only the first table of table.include.list
    root = broken_root(tmp_path, "table.include.list: {{ source.table_include_list | q }}",
                       "table.include.list: {{ source.table_include_list.split(',')[0] | q }}")
    (connector,) = pl.sources(connect.load_generated(root, environment="nonprod"))
    assert connector.config["table.include.list"] == "public\\.kept"
    with pl.databases(pg_server, {"e2e_broken_db": BROKEN_DDL}), \
            pl.databases(sink_pg, {"e2ebroken": ""}):
        pl.apply_generated_sql(pg_server, sink_pg, root, environment="nonprod")
        pl.assert_valid(shared_stack.connect_url, [connector])
        running = pl.start_connectors(shared_stack, [connector])
        try:
            running.expect_ops(connector, "cdc.e2ebroken.kept", "public.kept", {K(id=1): ["r"]})
            with pytest.raises(AssertionError) as caught:
                running.expect_ops(connector, "cdc.e2ebroken.dropped", "public.dropped",
                                   {K(id=1): ["r"]}, timeout=5)
        finally:
            pl.stop_connectors(shared_stack, [connector], pg_server)
    assert str(caught.value) == (
        f"{BROKEN_SOURCE}: no events for public.dropped on topic cdc.e2ebroken.dropped "
        "within 5 s — is it in table.include.list?")

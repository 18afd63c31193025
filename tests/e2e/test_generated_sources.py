"""Generated source connectors on the real engine: Kafka Connect 4.3 + Debezium 3.6
against a real PostgreSQL, with what arrives on the broker asserted per key.

Connectors are turned into the Strimzi request by :mod:`cdc_generator.connect` (the
``${env:VAR}`` references are resolved by the worker), validated by the worker's
validate endpoint, created, and read back. A missing event fails naming the generated
file, the table and the topic (see tests/e2e/pipelines.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

import cdc_generator
from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, write_config
from .kafka import Record
from .stack import REPO_ROOT, Stack

pytestmark = pytest.mark.e2e

BUILTIN_TEMPLATES = Path(cdc_generator.__file__).parent / "templates"

K = pl.key
R = pl.ROUTER_KEY_FIELD


def assert_keys_are(records: list[Record], columns: set[str], path: str) -> None:
    """Every key holds exactly ``columns`` (the configured primary key, plus the router
    field where several schemas feed a topic), in its payload and in its schema."""
    for record in records:
        fields = set(record.key_payload)
        schema_fields = {f["field"] for f in record.key["schema"]["fields"]}
        assert fields == columns == schema_fields, (
            f"{path}: key of {pl.table_of(record)} on {record.topic} is "
            f"{record.key_payload}, expected exactly the columns {sorted(columns)}")


# --------------------------------------------------------------------------- repo output


def test_repo_directory_schema_per_tenant(repo_sources: pl.RunningSources,
                                          pg_server: localpg.LocalPostgres) -> None:
    """generated/pipelines/directory: three schemas feed one topic per table; keys
    carry the schema; the sink's collection.name.format finds the tenant table."""
    src = repo_sources.by_name("source-directory")
    sink = connect.load_generated(REPO_ROOT, environment=ENVIRONMENT,
                                  service="directory")
    fmt = pl.sinks(sink)[0].config["collection.name.format"]
    db = src.config["database.dbname"]
    schemas = ("public", "customer_a", "customer_b")

    for schema in schemas:
        snapshot = {K(id=n, **{R: schema}): ["r"] for n in (1, 2)}
        for table in ("organizations", "users"):
            records = repo_sources.expect_ops(src, f"cdc.directory.{table}",
                                              f"{schema}.{table}", snapshot)
            assert_keys_are(records, {"id", R}, src.path)
    countries = repo_sources.expect_ops(
        src, "cdc.directory.countries", "public.countries",
        {K(code=f"code {n}", **{R: "public"}): ["r"] for n in (1, 2)})
    assert_keys_are(countries, {"code", R}, src.path)

    pl.execute(pg_server, db,
               "INSERT INTO customer_a.users (id, name) VALUES (10, 'a ten')",
               "INSERT INTO customer_b.users (id, name) VALUES (10, 'b ten')",
               "UPDATE customer_a.users SET name = 'a one' WHERE id = 1",
               "DELETE FROM customer_b.users WHERE id = 2")
    want = {
        "customer_a": {K(id=1, **{R: "customer_a"}): ["r", "u"],
                       K(id=2, **{R: "customer_a"}): ["r"],
                       K(id=10, **{R: "customer_a"}): ["c"]},
        "customer_b": {K(id=1, **{R: "customer_b"}): ["r"],
                       K(id=2, **{R: "customer_b"}): ["r", "d"],
                       K(id=10, **{R: "customer_b"}): ["c"]},
    }
    for schema, expected in want.items():
        records = repo_sources.expect_ops(src, "cdc.directory.users", f"{schema}.users",
                                          expected)
        for record in records:
            source = pl.source_of(record)
            assert source["schema"] == record.key_payload[R] == schema
            assert source["db"] == db
            target = pl.resolve_collection_name(fmt, source, record.topic)
            assert target == f"{schema}.users", f"{fmt} -> {target} for {record}"
    # same id, two tenants: two keys on the one topic
    tens = [r for r in repo_sources.seen["cdc.directory.users"] if r.key_payload["id"] == 10]
    assert {r.key_payload[R] for r in tens} == {"customer_a", "customer_b"}


def test_repo_accounting_db_per_tenant(repo_sources: pl.RunningSources,
                                       pg_server: localpg.LocalPostgres) -> None:
    """generated/pipelines/accounting: one source per tenant database, each onto its
    own topics, the row-filtered ledger never showing the shared rows."""
    tenants = ("acme", "globex", "initech")
    changed = ("acme", "globex")
    for tenant in changed:
        db = repo_sources.by_name(f"source-accounting-{tenant}").config["database.dbname"]
        pl.execute(
            pg_server, db,
            "INSERT INTO public.invoices (id, name) VALUES (10, 'new')",
            "UPDATE public.invoices SET name = 'changed' WHERE id = 1",
            "DELETE FROM public.invoices WHERE id = 2",
            "INSERT INTO public.invoice_lines (invoice_id, line_no, name) VALUES (10, 1, 'l')",
            f"INSERT INTO public.ledger_entries (id, owner_id, name) VALUES (10, '{tenant}', 'x')",
            "INSERT INTO public.ledger_entries (id, owner_id, name) VALUES (11, 'shared', 'y')",
            "UPDATE public.ledger_entries SET name = 'both' WHERE id IN (1, 2)",
            "DELETE FROM public.ledger_entries WHERE id = 11",
        )
    for tenant in tenants:
        src = repo_sources.by_name(f"source-accounting-{tenant}")
        db = src.config["database.dbname"]
        prefix = f"cdc.accounting.{tenant}"
        moved = tenant in changed
        invoices = repo_sources.expect_ops(src, f"{prefix}.invoices", "public.invoices", {
            K(id=1): ["r", "u"] if moved else ["r"],
            K(id=2): ["r", "d"] if moved else ["r"],
            **({K(id=10): ["c"]} if moved else {}),
        })
        assert_keys_are(invoices, {"id"}, src.path)
        lines = repo_sources.expect_ops(src, f"{prefix}.invoice_lines", "public.invoice_lines", {
            K(invoice_id=1, line_no=1): ["r"], K(invoice_id=2, line_no=2): ["r"],
            **({K(invoice_id=10, line_no=1): ["c"]} if moved else {}),
        })
        assert_keys_are(lines, {"invoice_id", "line_no"}, src.path)  # composite key
        # row filter owner_id = '<tenant>': never the 'shared' rows (2, 11)
        ledger = repo_sources.expect_ops(src, f"{prefix}.ledger_entries",
                                         "public.ledger_entries", {
            K(id=1): ["r", "u"] if moved else ["r"],
            **({K(id=10): ["c"]} if moved else {}),
        })
        assert {pl.row_of(r)["owner_id"] for r in ledger} == {tenant}
        for record in (*invoices, *lines, *ledger):
            assert pl.source_of(record)["db"] == db, f"{src.path}: {record}"


# --------------------------------------------------------------------------- test configs


def test_db_shared_column_row_filter(generated_sources: pl.RunningSources,
                                     pg_server: localpg.LocalPostgres) -> None:
    """isolation: column, filtered table: customer_c rows never leave the database,
    neither in the snapshot nor streaming; a composite configured key."""
    src = generated_sources.by_name("source-e2ecol")
    assert src.config["publication.autocreate.mode"] == "disabled"
    assert "snapshot.select.statement.overrides.public.accounts" in src.config
    generated_sources.expect_ops(src, "cdc.e2ecol.accounts", "public.accounts",
                                 {K(id=1): ["r"], K(id=2): ["r"]})
    pl.execute(pg_server, "e2e_col_db",
               "INSERT INTO public.accounts VALUES (4, 'customer_a', 'a2'), "
               "(5, 'customer_c', 'c2')",
               "UPDATE public.accounts SET name = 'c1!' WHERE id = 3",
               "DELETE FROM public.accounts WHERE id = 5",
               "UPDATE public.accounts SET name = 'a1!' WHERE id = 1",
               "DELETE FROM public.accounts WHERE id = 2",
               "INSERT INTO public.memberships (org_id, user_id, role) VALUES (2, 1, 'member')",
               "UPDATE public.memberships SET role = 'owner' WHERE org_id = 1 AND user_id = 1",
               "DELETE FROM public.memberships WHERE org_id = 1 AND user_id = 2")
    accounts = generated_sources.expect_ops(src, "cdc.e2ecol.accounts", "public.accounts", {
        K(id=1): ["r", "u"], K(id=2): ["r", "d"], K(id=4): ["c"]})
    assert {pl.row_of(r)["customer_id"] for r in accounts} == {"customer_a", "customer_b"}
    members = generated_sources.expect_ops(src, "cdc.e2ecol.memberships", "public.memberships", {
        K(org_id=1, user_id=1): ["r", "u"], K(org_id=1, user_id=2): ["r", "d"],
        K(org_id=2, user_id=1): ["c"]})
    # the table's primary key is the surrogate `id`: keys are the configured columns
    assert_keys_are(members, {"org_id", "user_id"}, src.path)


def test_db_shared_schema(generated_sources: pl.RunningSources,
                          pg_server: localpg.LocalPostgres, generated_root: Path) -> None:
    """isolation: schema: equal ids in tenant_a and tenant_b are distinct keys on the one
    topic, and each event's source.schema picks the sink's target table."""
    src = generated_sources.by_name("source-e2esch")
    sink = pl.sinks(connect.load_generated(generated_root, environment=ENVIRONMENT,
                                           service="e2esch"))[0]
    fmt = sink.config["collection.name.format"]
    pl.execute(pg_server, "e2e_sch_db",
               "INSERT INTO tenant_a.items VALUES (3, 'a-three')",
               "INSERT INTO tenant_b.items VALUES (3, 'b-three')",
               "UPDATE tenant_b.items SET label = 'b-one!' WHERE id = 1",
               "DELETE FROM tenant_a.items WHERE id = 2")
    want = {
        "tenant_a": {K(id=1, **{R: "tenant_a"}): ["r"], K(id=2, **{R: "tenant_a"}): ["r", "d"],
                     K(id=3, **{R: "tenant_a"}): ["c"]},
        "tenant_b": {K(id=1, **{R: "tenant_b"}): ["r", "u"], K(id=2, **{R: "tenant_b"}): ["r"],
                     K(id=3, **{R: "tenant_b"}): ["c"]},
    }
    for schema, expected in want.items():
        records = generated_sources.expect_ops(src, "cdc.e2esch.items", f"{schema}.items",
                                               expected)
        assert_keys_are(records, {"id", R}, src.path)
        for record in records:
            source = pl.source_of(record)
            assert source["schema"] == record.key_payload[R] == schema
            assert pl.resolve_collection_name(fmt, source, record.topic) == f"{schema}.items"
            if record.op != "d":  # a delete's `before` holds the replica identity only
                assert pl.row_of(record)["label"].startswith(schema[-1] + "-")


def test_db_shared_rls(generated_sources: pl.RunningSources,
                       pg_server: localpg.LocalPostgres) -> None:
    """isolation: rls: a role that bypasses RLS (superuser here) sees every tenant's rows,
    in the snapshot and streaming, although the table forces row-level security."""
    src = generated_sources.by_name("source-e2erls")
    pl.execute(pg_server, "e2e_rls_db", "INSERT INTO public.notes VALUES (3, 't3', 'z')",
               "UPDATE public.notes SET body = 'x!' WHERE id = 1")
    notes = generated_sources.expect_ops(src, "cdc.e2erls.notes", "public.notes", {
        K(id=1): ["r", "u"], K(id=2): ["r"], K(id=3): ["c"]})
    assert {pl.row_of(r)["tenant"] for r in notes} == {"t1", "t2", "t3"}


def test_db_per_tenant_customer_filter(generated_sources: pl.RunningSources,
                                       pg_server: localpg.LocalPostgres) -> None:
    """db-per-tenant with `{{CUSTOMER_ID}}` in the filter: each tenant database's source
    emits only that tenant's rows, onto cdc.e2ept.<customer>.<table>."""
    for me, other in (("alpha", "beta"), ("beta", "alpha")):
        db = f"e2e_pt_{me}"
        pl.execute(pg_server, db,
                   f"INSERT INTO public.orders VALUES (4, '{me}', 'mine'), (5, '{other}', 'no')",
                   "UPDATE public.orders SET item = 'all' WHERE id IN (1, 2, 3)",
                   "DELETE FROM public.orders WHERE id = 5",
                   "INSERT INTO public.order_lines VALUES (4, 1, 1)")
    for me in ("alpha", "beta"):
        src = generated_sources.by_name(f"source-e2ept-{me}")
        prefix = f"cdc.e2ept.{me}"
        orders = generated_sources.expect_ops(src, f"{prefix}.orders", "public.orders", {
            K(id=1): ["r", "u"], K(id=4): ["c"]})
        assert {pl.row_of(r)["tenant"] for r in orders} == {me}
        lines = generated_sources.expect_ops(src, f"{prefix}.order_lines", "public.order_lines", {
            K(order_id=1, line_no=1): ["r"], K(order_id=1, line_no=2): ["r"],
            K(order_id=4, line_no=1): ["c"]})
        assert_keys_are(lines, {"order_id", "line_no"}, src.path)
        for record in (*orders, *lines):
            assert pl.source_of(record)["db"] == f"e2e_pt_{me}"


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
        shared_stack: Stack, pg_server: localpg.LocalPostgres, tmp_path: Path) -> None:
    # keep only the first table of table.include.list
    root = broken_root(tmp_path, "table.include.list: {{ source.table_include_list | q }}",
                       "table.include.list: {{ source.table_include_list.split(',')[0] | q }}")
    (connector,) = pl.sources(connect.load_generated(root, environment="nonprod"))
    assert connector.config["table.include.list"] == "public\\.kept"
    with pl.databases(pg_server, {"e2e_broken_db": BROKEN_DDL}):
        pl.assert_valid(shared_stack.connect_url, [connector])
        running = pl.start_sources(shared_stack, [connector])
        try:
            running.expect_ops(connector, "cdc.e2ebroken.kept", "public.kept", {K(id=1): ["r"]})
            with pytest.raises(AssertionError) as caught:
                running.expect_ops(connector, "cdc.e2ebroken.dropped", "public.dropped",
                                   {K(id=1): ["r"]}, timeout=5)
        finally:
            pl.stop_sources(shared_stack, [connector], pg_server)
    assert str(caught.value) == (
        f"{BROKEN_SOURCE}: no events for public.dropped on topic cdc.e2ebroken.dropped "
        "within 5 s — is it in table.include.list?")

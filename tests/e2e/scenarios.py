"""The whole-pipeline scenarios: one config per pattern and isolation strategy, the
databases behind them, the workload applied to them, and what each target table
must hold.

Every scenario is its own service (so slots, publications, topics and sink databases
never meet) in one config repository that `cdc-generator generate` turns into the
connectors the tests run. Its sources read the source PostgreSQL server; its sinks
write to a second server, into a database named after the service (the default).

The workload is a list of phases (:data:`PHASES`); after each one, every target table
must equal its source again (tests/e2e/test_pipelines.py).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cdc_generator import cli, devdb, localpg
from cdc_generator.publication import ident

from .reconcile import Expectation

PG_SERVER_BLOCK = ('{type: postgres, host: "${CDC_E2E_PG_HOST}", port: "${CDC_E2E_PG_PORT}", '
                   'user: "${CDC_E2E_PG_USER}", password: "${CDC_E2E_PG_PASSWORD}"}')

#: an environment's `sink:` block: the sink PostgreSQL the worker's ${CDC_E2E_SINK_*} name
E2E_SINK = """\
    sink:
      host: ${CDC_E2E_SINK_HOST}
      port: ${CDC_E2E_SINK_PORT}
      user: ${CDC_E2E_SINK_USER}
      password: ${CDC_E2E_SINK_PASSWORD}
"""

GROUPS = f"""\
environments:
  nonprod:
    heartbeat_interval_ms: 1000
{E2E_SINK}
server_groups:
  - name: e2ecol
    server_group_type: db-shared
    service: e2ecol
    isolation: column
    tenant_column: customer_id
    server: {PG_SERVER_BLOCK}
    databases:
      - name: e2e_col_db
  - name: e2esch
    server_group_type: db-shared
    service: e2esch
    isolation: schema
    server: {PG_SERVER_BLOCK}
    databases:
      - name: e2e_sch_db
        schemas: [tenant_a, tenant_b]
  - name: e2erls
    server_group_type: db-shared
    service: e2erls
    isolation: rls
    server: {PG_SERVER_BLOCK}
    databases:
      - name: e2e_rls_db
  - name: e2ept
    server_group_type: db-per-tenant
    service: e2ept
    server: {PG_SERVER_BLOCK}
    databases:
      - {{name: e2e_pt_alpha, customer: alpha}}
      # a customer id that is an SQL keyword: its sink schema must be quoted
      - {{name: e2e_pt_user, customer: user}}
  - name: e2eone
    server_group_type: db-per-tenant
    service: e2eone
    server: {PG_SERVER_BLOCK}
    databases:
      - {{name: e2e_one_beta, customer: beta}}
      - {{name: e2e_one_order, customer: order}}
"""

SERVICES = {
    "e2ecol": """\
        service: e2ecol
        server_group: e2ecol
        source:
          type: postgres
          tables:
            - schema: public
              name: accounts
              primary_key: id
              filter: "customer_id IN ('customer_a', 'customer_b')"
            # the table's own primary key is a surrogate: the configured key wins
            - schema: public
              name: memberships
              primary_key: [org_id, user_id]
            - {schema: public, name: typed, primary_key: id}
            - {schema: public, name: docs, primary_key: id}
        """,
    "e2esch": """\
        service: e2esch
        server_group: e2esch
        source:
          type: postgres
          tables:
            - name: items
              primary_key: id
            - name: docs
              primary_key: id
        """,
    "e2erls": """\
        service: e2erls
        server_group: e2erls
        source:
          type: postgres
          tables:
            - schema: public
              name: notes
              primary_key: id
        """,
    "e2ept": """\
        service: e2ept
        server_group: e2ept
        source:
          type: postgres
          tables:
            - schema: public
              name: orders
              primary_key: id
              filter: "tenant = '{{CUSTOMER_ID}}'"
            - schema: public
              name: order_lines
              primary_key: [order_id, line_no]
            - {schema: public, name: typed, primary_key: id}
            - {schema: public, name: docs, primary_key: id}
        """,
}
#: the same tables, and one sink for both tenant databases
SERVICES["e2eone"] = (SERVICES["e2ept"].replace("e2ept", "e2eone").rstrip(" ")
                      + "        sinks: one-per-service\n")

TENANT_SCHEMAS = ("tenant_a", "tenant_b")
#: db-per-tenant service -> (scenario, its tenant databases' prefix, its two customers)
PER_TENANT = {"e2ept": ("per-tenant", "e2e_pt_", ("alpha", "user")),
              # one sink for all tenants; a customer id that is an SQL keyword too
              "e2eone": ("per-tenant one sink", "e2e_one_", ("beta", "order"))}

# --------------------------------------------------------------------------- tables

#: one column of each common type; an enum the sink database does not have
TYPED_DDL = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE public.typed (
    id int PRIMARY KEY,
    c_small smallint, c_int int, c_big bigint,
    c_num numeric(12, 3), c_num_free numeric,
    c_text text, c_varchar varchar(40),
    c_bool boolean, c_date date, c_time time, c_ts timestamp, c_tstz timestamptz,
    c_uuid uuid, c_jsonb jsonb, c_bytea bytea,
    c_int_arr int[], c_text_arr text[], c_mood mood);
"""


def typed_row(n: int) -> str:
    """A VALUES tuple of public.typed with extreme and non-ASCII values."""
    return (f"({n}, -32768, {2_147_483_647 - n}, {9_223_372_036_854_775_807 - n}, "
            f"{n}123.456, 12345678901234567890.123456789{n}, "
            f"'Zoë \u2013 東京 😀 {n}', 'ümlaut-{n}', {'true' if n % 2 else 'false'}, "
            f"DATE '2024-02-29' + {n}, TIME '23:59:59.999999', "
            f"TIMESTAMP '1999-12-31 23:59:59.123456' + interval '{n} days', "
            f"TIMESTAMPTZ '2024-03-31 02:30:00.5+02', "
            f"'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a{n:02d}', "
            f"'{{\"k\": [1, 2.5, null, \"ü\"], \"n\": {n}}}', '\\xdeadbeef{n:02x}', "
            f"ARRAY[1, {n}, -3], ARRAY['a', 'b c', 'ß'], 'happy')")


#: a row of NULLs in every column but the key
TYPED_NULL = "(0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, " \
             "NULL, NULL, NULL, NULL, NULL, NULL)"

#: text and jsonb large and random enough to be stored out of line (TOAST)
DOCS_DDL = """
CREATE TABLE {schema}.docs (id int PRIMARY KEY, title text, body text, meta jsonb);
"""


def docs_rows(schema: str, ids: range) -> str:
    big = ("(SELECT string_agg(md5(random()::text), '') FROM generate_series(1, 400))")
    return "\n".join(
        f"INSERT INTO {schema}.docs VALUES ({i}, 'title {i}', {big}, "
        f"jsonb_build_object('blob', {big}, 'i', {i}));" for i in ids)


def _pt_ddl(me: str, other: str) -> str:
    return f"""
CREATE TABLE public.orders (id int PRIMARY KEY, tenant text NOT NULL, item text);
-- a row filter may only read replica-identity columns
ALTER TABLE public.orders REPLICA IDENTITY FULL;
INSERT INTO public.orders VALUES (1, '{me}', 'own'), (2, '{other}', 'foreign'),
                                 (3, 'shared', 'consolidation'), (4, '{me}', 'own two');
CREATE TABLE public.order_lines (order_id int, line_no int, qty int,
                                 PRIMARY KEY (order_id, line_no));
INSERT INTO public.order_lines VALUES (1, 1, 5), (1, 2, 7), (4, 1, 1);
{TYPED_DDL}
INSERT INTO public.typed VALUES {typed_row(1)}, {TYPED_NULL};
{DOCS_DDL.format(schema="public")}
{docs_rows("public", range(1, 3))}
"""


DDL = {
    "e2e_col_db": f"""
CREATE TABLE public.accounts (id int PRIMARY KEY, customer_id text NOT NULL, name text);
ALTER TABLE public.accounts REPLICA IDENTITY FULL;
INSERT INTO public.accounts VALUES (1, 'customer_a', 'a1'), (2, 'customer_b', 'b1'),
                                   (3, 'customer_c', 'c1'), (4, 'customer_a', 'a2');
CREATE TABLE public.memberships (id serial PRIMARY KEY, org_id int NOT NULL,
                                 user_id int NOT NULL, role text, UNIQUE (org_id, user_id));
-- the configured key must be in the replica identity, or a DELETE event's key
-- (built from the old row) is {{org_id: 0, user_id: 0}}
ALTER TABLE public.memberships REPLICA IDENTITY USING INDEX memberships_org_id_user_id_key;
INSERT INTO public.memberships (org_id, user_id, role) VALUES (1, 1, 'admin'), (1, 2, 'member'),
                                                               (2, 1, 'member');
{TYPED_DDL}
INSERT INTO public.typed VALUES {typed_row(1)}, {TYPED_NULL};
{DOCS_DDL.format(schema="public")}
{docs_rows("public", range(1, 3))}
""",
    "e2e_sch_db": "\n".join(
        f"""
CREATE SCHEMA {s};
CREATE TABLE {s}.items (id int PRIMARY KEY, label text);
INSERT INTO {s}.items VALUES (1, '{s}-one'), (2, '{s}-two'), (3, '{s}-three');
{DOCS_DDL.format(schema=s)}
{docs_rows(s, range(1, 3))}
""" for s in TENANT_SCHEMAS),
    "e2e_rls_db": """
CREATE TABLE public.notes (id int PRIMARY KEY, tenant text NOT NULL, body text);
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_only ON public.notes USING (tenant = current_setting('app.tenant', true));
INSERT INTO public.notes VALUES (1, 't1', 'x'), (2, 't2', 'y'), (3, 't1', 'z');
""",
    **{f"{db}{me}": _pt_ddl(me, other)
       for _scenario, db, pair in PER_TENANT.values()
       for me, other in (pair, pair[::-1])},
}

#: the sink databases: one per service (the default sink database name)
SINK_DATABASES = tuple(SERVICES)

#: Target tables made before the sinks start (after generated/sql/.../sink-schemas.sql),
#: as preflight's exact_numeric check advises: the JDBC sink would create an
#: unconstrained numeric as double precision; given the column, it writes it exactly
#: and adds the other columns itself.
_EXACT = "(id int PRIMARY KEY, c_num_free numeric)"
SINK_DDL = {
    "e2ecol": f"CREATE TABLE public.typed {_EXACT};",
    **{service: "\n".join(f'CREATE TABLE "{c}".typed {_EXACT};' for c in customers)
       for service, (_scenario, _db, customers) in PER_TENANT.items()},
}


def expectations() -> list[Expectation]:
    """What every target table holds: the source rows its pipeline is configured to
    carry, in the table the README says (db-shared: the source schema and table;
    db-per-tenant: the customer's schema)."""
    out = [
        Expectation("column", "e2e_col_db", "public.accounts", "e2ecol", "public.accounts",
                    ("id",), "customer_id IN ('customer_a', 'customer_b')"),
        Expectation("column", "e2e_col_db", "public.memberships", "e2ecol",
                    "public.memberships", ("org_id", "user_id")),
        Expectation("column", "e2e_col_db", "public.typed", "e2ecol", "public.typed", ("id",)),
        Expectation("column", "e2e_col_db", "public.docs", "e2ecol", "public.docs", ("id",)),
        Expectation("rls", "e2e_rls_db", "public.notes", "e2erls", "public.notes", ("id",)),
    ]
    for schema in TENANT_SCHEMAS:
        for table in ("items", "docs"):
            out.append(Expectation("schema", "e2e_sch_db", f"{schema}.{table}", "e2esch",
                                   f"{schema}.{table}", ("id",)))
    for service, (scenario, prefix, customers) in PER_TENANT.items():
        for customer in customers:
            db = f"{prefix}{customer}"
            out += [
                Expectation(scenario, db, "public.orders", service, f"{customer}.orders",
                            ("id",), f"tenant = '{customer}'"),
                Expectation(scenario, db, "public.order_lines", service,
                            f"{customer}.order_lines", ("order_id", "line_no")),
                Expectation(scenario, db, "public.typed", service, f"{customer}.typed", ("id",)),
                Expectation(scenario, db, "public.docs", service, f"{customer}.docs", ("id",)),
            ]
    return out


SCENARIOS = ("column", "schema", "rls", *(s for s, _db, _c in PER_TENANT.values()))

# --------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Phase:
    """One step of the workload: SQL per source database, run in one transaction each."""

    name: str
    sql: Mapping[str, str]


def _both_customers(text: Callable[[str, str], str]) -> dict[str, str]:
    """`text(me, other)` for each tenant database of each db-per-tenant service."""
    return {f"{db}{me}": text(me, other)
            for _scenario, db, pair in PER_TENANT.values()
            for me, other in (pair, pair[::-1])}


def _per_schema(text: Callable[[str], str]) -> str:
    return "\n".join(text(s) for s in TENANT_SCHEMAS)


PHASES: tuple[Phase, ...] = (
    Phase("insert-update", {
        "e2e_col_db": f"""
INSERT INTO public.accounts VALUES (10, 'customer_a', 'a10'), (11, 'customer_c', 'c11');
UPDATE public.accounts SET name = 'a1 renamed' WHERE id = 1;
UPDATE public.accounts SET name = NULL WHERE id = 2;
INSERT INTO public.memberships (org_id, user_id, role) VALUES (3, 3, 'owner');
UPDATE public.memberships SET role = 'admin' WHERE org_id = 1 AND user_id = 2;
INSERT INTO public.typed VALUES {typed_row(2)}, {typed_row(3)};
UPDATE public.typed SET c_text = NULL, c_jsonb = '[]', c_text_arr = '{{}}' WHERE id = 1;
UPDATE public.typed SET c_int = 7, c_mood = 'sad' WHERE id = 0;
""",
        "e2e_sch_db": _per_schema(lambda s: f"""
INSERT INTO {s}.items VALUES (10, '{s}-ten');
UPDATE {s}.items SET label = '{s}-one renamed' WHERE id = 1;
"""),
        "e2e_rls_db": """
INSERT INTO public.notes VALUES (10, 't2', 'new');
UPDATE public.notes SET body = 'changed' WHERE id = 1;
""",
        **_both_customers(lambda me, other: f"""
INSERT INTO public.orders VALUES (10, '{me}', 'new own'), (11, '{other}', 'new foreign');
UPDATE public.orders SET item = 'own renamed' WHERE id = 1;
UPDATE public.orders SET item = 'foreign renamed' WHERE id = 2;
INSERT INTO public.order_lines VALUES (10, 1, 3), (10, 2, NULL);
UPDATE public.order_lines SET qty = qty + 1 WHERE order_id = 1;
INSERT INTO public.typed VALUES {typed_row(2)};
UPDATE public.typed SET c_num = NULL, c_bytea = '\\x00' WHERE id = 1;
"""),
    }),
    # a small column changes; the large text and jsonb (stored out of line) do not,
    # so logical replication does not send them (REPLICA IDENTITY DEFAULT)
    Phase("toast-unchanged", {
        "e2e_col_db": "UPDATE public.docs SET title = title || ' (edited)';",
        "e2e_sch_db": _per_schema(
            lambda s: f"UPDATE {s}.docs SET title = title || ' (edited)' WHERE id = 1;"),
        **_both_customers(lambda me, _o: "UPDATE public.docs SET title = 'edited' WHERE id = 2;"),
    }),
    Phase("delete-and-key-change", {
        "e2e_col_db": """
DELETE FROM public.accounts WHERE id IN (4, 3);
UPDATE public.accounts SET id = 110 WHERE id = 10;
DELETE FROM public.memberships WHERE org_id = 2 AND user_id = 1;
UPDATE public.memberships SET user_id = 9 WHERE org_id = 1 AND user_id = 1;
DELETE FROM public.typed WHERE id = 3;
UPDATE public.typed SET id = 30 WHERE id = 2;
UPDATE public.docs SET id = 20 WHERE id = 2;
""",
        "e2e_sch_db": _per_schema(lambda s: f"""
DELETE FROM {s}.items WHERE id = 3;
UPDATE {s}.items SET id = 20 WHERE id = 2;
"""),
        "e2e_rls_db": """
DELETE FROM public.notes WHERE id = 3;
UPDATE public.notes SET id = 20 WHERE id = 2;
""",
        **_both_customers(lambda me, _o: """
DELETE FROM public.orders WHERE id IN (4, 2);
UPDATE public.orders SET id = 100 WHERE id = 10;
DELETE FROM public.order_lines WHERE order_id = 4;
UPDATE public.order_lines SET line_no = 3 WHERE order_id = 1 AND line_no = 2;
UPDATE public.docs SET id = 10 WHERE id = 1;
"""),
    }),
    # rows move into and out of a row filter: PostgreSQL publishes them as an
    # insert and a delete
    Phase("filter-transitions", {
        "e2e_col_db": """
UPDATE public.accounts SET customer_id = 'customer_c' WHERE id = 1;
UPDATE public.accounts SET customer_id = 'customer_b' WHERE id = 11;
""",
        **_both_customers(lambda me, other: f"""
UPDATE public.orders SET tenant = '{other}' WHERE id = 1;
UPDATE public.orders SET tenant = '{me}' WHERE id = 3;
"""),
    }),
    Phase("truncate", {
        "e2e_col_db": """
TRUNCATE public.memberships;
INSERT INTO public.memberships (org_id, user_id, role) VALUES (5, 5, 'after truncate');
""",
        "e2e_sch_db": "TRUNCATE tenant_a.items;\n"
                      "INSERT INTO tenant_a.items VALUES (1, 'after truncate');",
        "e2e_rls_db": "TRUNCATE public.notes;",
        **_both_customers(lambda me, _o: """
TRUNCATE public.order_lines;
INSERT INTO public.order_lines VALUES (1, 1, 42);
"""),
    }),
)


def repo_phases(seeds: Iterable[devdb.SeedDatabase]) -> dict[str, dict[str, str]]:
    """The workload of this repository's own pipelines, per phase name: on every table
    dev-db seeded, new rows (one the tenant's, one a filter keeps out), a changed and a
    deleted row; then every table truncated and written again."""
    out: dict[str, dict[str, str]] = {"insert-update": {}, "delete-and-key-change": {},
                                      "truncate": {}}
    for db in seeds:
        inserts, deletes, truncates = [], [], []
        for table in db.tables:
            qualified = f"{ident(table.schema)}.{ident(table.name)}"
            row_1 = devdb.seed_values(table, 1, db.customer)
            first = " AND ".join(f"{ident(c)} = {row_1[c]}" for c in table.primary_key)
            inserts += [devdb.insert_statement(table, 3, db.customer),
                        devdb.insert_statement(table, 4, db.customer),
                        f"UPDATE {qualified} SET name = 'renamed' WHERE {first}"]
            deletes.append(f"DELETE FROM {qualified} WHERE {first}")
            truncates += [f"TRUNCATE {qualified}", devdb.insert_statement(table, 5, db.customer)]
        out["insert-update"][db.name] = ";\n".join(inserts)
        out["delete-and-key-change"][db.name] = ";\n".join(deletes)
        out["truncate"][db.name] = ";\n".join(truncates)
    return out


def apply_phase(pg: localpg.LocalPostgres, phase: Phase) -> None:
    for db, text in phase.sql.items():
        with pg.connect(db, autocommit=False) as conn:
            conn.execute(text)
            conn.commit()


def write_config(root: Path, *, templates: dict[str, str] | None = None,
                 groups: str = GROUPS, services: dict[str, str] | None = None) -> Path:
    """A config repository under ``root``, generated with `cdc-generator generate`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "server-groups.yaml").write_text(groups)
    (root / "services").mkdir(exist_ok=True)
    for name, text in (SERVICES if services is None else services).items():
        (root / "services" / f"{name}.yaml").write_text(textwrap.dedent(text))
    if templates:
        (root / "templates").mkdir(exist_ok=True)
        for name, text in templates.items():
            (root / "templates" / name).write_text(text)
    code = cli.main(["generate", "--root", str(root)])
    assert code == 0, f"cdc-generator generate --root {root} exited {code}"
    return root

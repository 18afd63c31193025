"""Session fixtures of the e2e suite: one broker + worker for every e2e module, and the
generated source connectors running on it.

Two sets of generated connectors run for the whole session, because a create costs a
rebalance (about 2 s each) and the sink checks (test_sinks.py) compare with what the
sources really emitted:

* ``repo_sources``: this repository's own ``generated/`` output (environment nonprod),
  against databases seeded by :mod:`cdc_generator.devdb` from the repository's config;
* ``generated_sources``: configs written and generated inside the test session, one
  service per pattern and isolation strategy (see :data:`TEST_GROUPS`).

Each set is deleted at the end of the session, its slots and databases dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import cli, connect, devdb, localpg
from cdc_generator.config.repo import load_config

from . import pipelines as pl
from .stack import REPO_ROOT, Stack, start_stack

log = logging.getLogger(__name__)

ENVIRONMENT = "nonprod"

#: a plugin directory holding the Debezium JDBC sink (optional: not on any registry here)
JDBC_SINK_DIR_ENV = "CDC_E2E_JDBC_SINK_DIR"


def jdbc_sink_dir() -> Path | None:
    value = os.environ.get(JDBC_SINK_DIR_ENV)
    return Path(value) if value else None


@pytest.fixture(scope="session")
def e2e_env(pg_server: localpg.LocalPostgres) -> dict[str, str]:
    return pl.worker_env(pg_server)


@pytest.fixture(scope="session")
def shared_stack(e2e_env: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Tansu broker + Connect worker for the whole e2e session."""
    extra: dict[str, str] = {}
    sink_dir = jdbc_sink_dir()
    if sink_dir is not None:
        # the JDBC sink and its dependencies in their own plugin class loader; a
        # plugin directory may lack ServiceLoader manifests, so scan as well
        extra = {"plugin.path": str(sink_dir), "plugin.discovery": "hybrid_warn"}
    with start_stack(tmp_path_factory.mktemp("e2e-shared"), env=e2e_env,
                     extra_worker_props=extra) as stack:
        log.info("shared stack timings %s", stack.timings)
        yield stack


# --------------------------------------------------------------------------- repo output


@pytest.fixture(scope="session")
def repo_sources(shared_stack: Stack, pg_server: localpg.LocalPostgres) -> Iterator[
        pl.RunningSources]:
    """This repository's generated nonprod sources, running against dev-db seeded data."""
    config = load_config(REPO_ROOT)
    seeds = devdb.seed_plan(config, ENVIRONMENT)
    ddl = {db.name: ";\n".join(devdb.seed_statements(db)) for db in seeds}
    with _running_sources(shared_stack, pg_server, REPO_ROOT, ddl, "repo sources") as running:
        yield running


@contextlib.contextmanager
def _running_sources(stack: Stack, pg_server: localpg.LocalPostgres, root: Path,
                     ddl: dict[str, str], label: str) -> Iterator[pl.RunningSources]:
    """Seed `ddl`, apply root's publication SQL, validate and start root's generated
    sources as one batch; stop them (and drop their slots) afterwards."""
    with pl.databases(pg_server, ddl):
        pl.apply_publication_sql(pg_server, root, environment=ENVIRONMENT)
        connectors = pl.sources(connect.load_generated(root, environment=ENVIRONMENT))
        assert connectors, f"no generated sources under {root}/generated for {ENVIRONMENT}"
        with stack.keep_logs_on_failure(label):
            pl.assert_valid(stack.connect_url, connectors)
            running = pl.start_sources(stack, connectors)
        try:
            yield running
        finally:
            pl.stop_sources(stack, connectors, pg_server)


# --------------------------------------------------------------------------- test configs

PG_SERVER_BLOCK = ('{type: postgres, host: "${CDC_E2E_PG_HOST}", port: "${CDC_E2E_PG_PORT}", '
                   'user: "${CDC_E2E_PG_USER}", password: "${CDC_E2E_PG_PASSWORD}"}')

#: one server group + service per pattern / isolation strategy; distinct service
#: names keep slots, publications and topics apart on the one server and broker
TEST_GROUPS = f"""\
environments:
  nonprod:
    heartbeat_interval_ms: 1000
    sink:
      host: ${{CDC_E2E_SINK_HOST}}
      port: ${{CDC_E2E_SINK_PORT}}
      database: e2e_sink
      user: ${{CDC_E2E_PG_USER}}
      password: ${{CDC_E2E_PG_PASSWORD}}

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
      - {{name: e2e_pt_beta, customer: beta}}
"""

TEST_SERVICES = {
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
        """,
    "e2esch": """\
        service: e2esch
        server_group: e2esch
        source:
          type: postgres
          tables:
            - name: items
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
        """,
}

_PT_DDL = """
CREATE TABLE public.orders (id int PRIMARY KEY, tenant text NOT NULL, item text);
-- a row filter may only read replica-identity columns
ALTER TABLE public.orders REPLICA IDENTITY FULL;
INSERT INTO public.orders VALUES (1, '{me}', 'own'), (2, '{other}', 'foreign'),
                                 (3, 'shared', 'consolidation');
CREATE TABLE public.order_lines (order_id int, line_no int, qty int,
                                 PRIMARY KEY (order_id, line_no));
INSERT INTO public.order_lines VALUES (1, 1, 5), (1, 2, 7);
"""

TEST_DDL = {
    "e2e_col_db": """
        CREATE TABLE public.accounts (id int PRIMARY KEY, customer_id text NOT NULL, name text);
        ALTER TABLE public.accounts REPLICA IDENTITY FULL;
        INSERT INTO public.accounts VALUES (1, 'customer_a', 'a1'), (2, 'customer_b', 'b1'),
                                           (3, 'customer_c', 'c1');
        CREATE TABLE public.memberships (id serial PRIMARY KEY, org_id int NOT NULL,
                                         user_id int NOT NULL, role text,
                                         UNIQUE (org_id, user_id));
        -- the configured key must be in the replica identity, or a DELETE event's key
        -- (built from the old row) is {org_id: 0, user_id: 0}: see the e2e report
        ALTER TABLE public.memberships
            REPLICA IDENTITY USING INDEX memberships_org_id_user_id_key;
        INSERT INTO public.memberships (org_id, user_id, role)
            VALUES (1, 1, 'admin'), (1, 2, 'member');
    """,
    "e2e_sch_db": """
        CREATE SCHEMA tenant_a;
        CREATE SCHEMA tenant_b;
        CREATE TABLE tenant_a.items (id int PRIMARY KEY, label text);
        CREATE TABLE tenant_b.items (id int PRIMARY KEY, label text);
        INSERT INTO tenant_a.items VALUES (1, 'a-one'), (2, 'a-two');
        INSERT INTO tenant_b.items VALUES (1, 'b-one'), (2, 'b-two');
    """,
    "e2e_rls_db": """
        CREATE TABLE public.notes (id int PRIMARY KEY, tenant text NOT NULL, body text);
        ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
        ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;
        CREATE POLICY tenant_only ON public.notes
            USING (tenant = current_setting('app.tenant', true));
        INSERT INTO public.notes VALUES (1, 't1', 'x'), (2, 't2', 'y');
    """,
    "e2e_pt_alpha": _PT_DDL.format(me="alpha", other="beta"),
    "e2e_pt_beta": _PT_DDL.format(me="beta", other="alpha"),
}


def write_config(root: Path, *, templates: dict[str, str] | None = None,
                 groups: str = TEST_GROUPS,
                 services: dict[str, str] | None = None) -> Path:
    """A config repository under ``root``, generated with `cdc-generator generate`."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "server-groups.yaml").write_text(groups)
    (root / "services").mkdir(exist_ok=True)
    for name, text in (TEST_SERVICES if services is None else services).items():
        (root / "services" / f"{name}.yaml").write_text(textwrap.dedent(text))
    if templates:
        (root / "templates").mkdir(exist_ok=True)
        for name, text in templates.items():
            (root / "templates" / name).write_text(text)
    code = cli.main(["generate", "--root", str(root)])
    assert code == 0, f"cdc-generator generate --root {root} exited {code}"
    return root


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("e2e-config") / "repo")


@pytest.fixture(scope="session")
def generated_sources(shared_stack: Stack, pg_server: localpg.LocalPostgres,
                      generated_root: Path) -> Iterator[pl.RunningSources]:
    """The test configs' sources, one batch, against :data:`TEST_DDL` databases."""
    with _running_sources(shared_stack, pg_server, generated_root, TEST_DDL,
                          "generated sources") as running:
        yield running

"""Session fixtures of the e2e suite: one Kafka cluster + Connect worker, a source and a
sink PostgreSQL server, and the generated pipelines (sources and sinks) running on them.

Two sets of generated pipelines run for the whole session, created as one batch (a
create costs a rebalance):

* this repository's own ``generated/`` output (environment nonprod), against
  databases seeded by :mod:`cdc_generator.devdb` from the repository's config;
* the scenario configs of :mod:`tests.e2e.scenarios`, one service per pattern and
  isolation strategy, generated inside the test session.

Each set is deleted at the end of the session, its slots and databases dropped.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cdc_generator import connect, devdb, localpg, rowfilter
from cdc_generator.config.model import GroupType
from cdc_generator.config.repo import load_config

from . import pipelines as pl
from . import scenarios
from .kafka import group_lag
from .reconcile import Expectation
from .stack import REPO_ROOT, Stack, start_stack

log = logging.getLogger(__name__)

ENVIRONMENT = "nonprod"

#: the brokers of the session cluster: enough for the generated default replication
#: factor (3) and min.insync.replicas (2)
BROKERS = 3


@pytest.fixture(scope="session")
def sink_pg() -> Iterator[localpg.LocalPostgres]:
    """A second PostgreSQL server: where the sinks write."""
    try:
        server = localpg.start()
    except localpg.LocalPostgresError as exc:
        pytest.fail(f"could not start the sink PostgreSQL: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def e2e_env(pg_server: localpg.LocalPostgres, sink_pg: localpg.LocalPostgres) -> dict[str, str]:
    return pl.worker_env(pg_server, sink_pg)


@pytest.fixture(scope="session")
def shared_stack(e2e_env: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One Kafka cluster + Connect worker for the whole e2e session."""
    with start_stack(tmp_path_factory.mktemp("e2e-shared"), env=e2e_env,
                     brokers=BROKERS) as stack:
        log.info("shared stack timings %s", stack.timings)
        yield stack


@dataclass
class Pipelines:
    """Running generated connectors, and what their targets must hold."""

    running: pl.Running
    expectations: list[Expectation]
    source_pg: localpg.LocalPostgres
    sink_pg: localpg.LocalPostgres
    #: this repository's workload: phase name -> database -> SQL
    repo_phases: dict[str, dict[str, str]]

    def lag(self) -> int:
        """Records the sinks have not consumed yet."""
        stack = self.running.stack
        return sum(group_lag(stack.bootstrap, f"connect-{c.name}",
                             pl.sink_topics(stack.bootstrap, c))
                   for c in pl.sinks(self.running.connectors))


# --------------------------------------------------------------------------- repo output


def repo_expectations() -> tuple[dict[str, str], list[Expectation], dict[str, dict[str, str]]]:
    """This repository's nonprod config: the DDL dev-db seeds each source database with,
    and the target table each captured table lands in (README, "What is generated"),
    holding the rows its filter (with the tenant's id) lets through; and the workload."""
    config = load_config(REPO_ROOT)
    seeds = devdb.seed_plan(config, ENVIRONMENT)
    ddl = {db.name: ";\n".join(devdb.seed_statements(db)) for db in seeds}
    filters = rowfilter.TenantFilters()
    out: list[Expectation] = []
    for service in config.services:
        group = config.group(service.server_group)
        assert group is not None
        for db in group.databases_of(service.name):
            customer = db.customer if group.type is GroupType.DB_PER_TENANT else None
            for table in service.tables:
                where = None if table.filter is None else filters.canonical(table.filter,
                                                                             customer)
                for schema in table.schemas_in(db):
                    target = f"{customer or schema}.{table.name}"
                    out.append(Expectation(f"repo {service.name}", db.name_in(ENVIRONMENT),
                                           f"{schema}.{table.name}", service.name, target,
                                           table.primary_key, where))
    return ddl, out, scenarios.repo_phases(seeds)


@contextlib.contextmanager
def running_pipelines(stack: Stack, pg: localpg.LocalPostgres, sink: localpg.LocalPostgres, *,
                      roots: list[Path], ddl: dict[str, str], sink_dbs: list[str],
                      sink_ddl: dict[str, str]) -> Iterator[pl.Running]:
    """Seed `ddl` and empty sink databases, run each root's generated SQL and then
    `sink_ddl`, validate and start every generated source and sink as one batch;
    delete them (and drop their slots and databases) afterwards."""
    with pl.databases(pg, ddl), pl.databases(sink, dict.fromkeys(sink_dbs, "")):
        connectors: list[connect.GeneratedConnector] = []
        for root in roots:
            pl.apply_generated_sql(pg, sink, root, environment=ENVIRONMENT)
            connectors += connect.load_generated(root, environment=ENVIRONMENT)
        for db, text in sink_ddl.items():
            pl.execute(sink, db, text)
        assert pl.sources(connectors), connectors
        assert pl.sinks(connectors), connectors
        with stack.keep_logs_on_failure("pipelines"):
            pl.assert_valid(stack.connect_url, connectors)
            running = pl.start_connectors(stack, connectors)
        try:
            yield running
        finally:
            pl.stop_connectors(stack, connectors, pg)


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenarios.write_config(tmp_path_factory.mktemp("e2e-config") / "repo")


@pytest.fixture(scope="session")
def pipelines(shared_stack: Stack, pg_server: localpg.LocalPostgres,
              sink_pg: localpg.LocalPostgres, generated_root: Path) -> Iterator[Pipelines]:
    """Every scenario's and this repository's generated pipelines, running."""
    repo_ddl, repo_expect, repo_phases = repo_expectations()
    sink_dbs = [*scenarios.SINK_DATABASES, *sorted({e.sink_db for e in repo_expect})]
    with running_pipelines(shared_stack, pg_server, sink_pg, roots=[REPO_ROOT, generated_root],
                           ddl={**scenarios.DDL, **repo_ddl}, sink_dbs=sink_dbs,
                           sink_ddl=scenarios.SINK_DDL) as running:
        yield Pipelines(running, [*scenarios.expectations(), *repo_expect], pg_server, sink_pg,
                        repo_phases)

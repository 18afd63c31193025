"""`sinks: one-per-service`: one sink connector for every tenant database of a
db-per-tenant service, the same targets as one sink per tenant.

The proof that it moves the data is the `per-tenant one sink` scenario of the e2e
suite; these tests pin what the plan promises: the one sink reads each tenant's
topics and no other, writes each where the per-tenant sink would, and needs no
change when a tenant is added.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from cdc_generator import control, names
from cdc_generator.cli import main
from cdc_generator.config.repo import load_config
from cdc_generator.plan import Pipeline, build_plan
from tests.helpers import GOLDEN

CASE = GOLDEN / "per-tenant-one-sink" / "input"


def _copy(tmp_path: Path, *, sinks: bool = True, tenants: str = "") -> Path:
    root = tmp_path / "repo"
    shutil.copytree(CASE, root)
    service = root / "services" / "accounting.yaml"
    if not sinks:
        service.write_text(service.read_text().replace("sinks: one-per-service\n", ""))
    if tenants:
        groups = root / "server-groups.yaml"
        groups.write_text(groups.read_text() + tenants)
    return root


def _targets(p: Pipeline) -> set[str]:
    """The target tables the sink writes for `p`'s tables, as Debezium 3.6 names them
    (DefaultCollectionNamingStrategy): ${topic} is the record's topic, after the
    transforms, with each '.' made '_'; ${source.table} the source table."""
    out = set()
    for table in p.source.tables:
        topic = table.topic
        if p.sink.tenant_route_regex:  # RegexRouter: the whole topic; Java's $1 is \\1
            topic = re.sub(f"^{p.sink.tenant_route_regex}$",
                           p.sink.tenant_route_replacement.replace("$", "\\"), topic)
        out.add(p.sink.collection_name_format.replace("${topic}", topic.replace(".", "_"))
                .replace("${source.table}", table.name))
    return out


def test_one_sink_per_environment_reads_every_tenant_and_nothing_else() -> None:
    pipelines = build_plan(load_config(CASE)).pipelines
    for env in {p.environment for p in pipelines}:
        mine = [p for p in pipelines if p.environment == env]
        assert len(mine) == 3
        assert len({p.sink for p in mine}) == 1
        assert [p.customer for p in mine if p.renders_sink] == [mine[0].customer]
        sink = mine[0].sink
        data = {t for p in mine for t in p.source.topics}
        assert set(sink.topics) == data
        others = {f"__debezium-heartbeat.{p.source.topic_prefix}" for p in mine} | {
            f"{p.source.topic_prefix}.{t}" for p in mine
            for t in control.Control.of(p.source.slot_name).tables}
        pattern = re.compile(sink.topics_regex or "")
        assert {t for t in data | others if pattern.fullmatch(t)} == data
        # another tenant's topics, one the config does not know yet, match too
        assert pattern.fullmatch("cdc.accounting.hooli.invoices")
        assert not pattern.fullmatch("cdc.accounting.hooli.payroll")
        assert not pattern.fullmatch("cdc.accounting2.hooli.invoices")


def test_the_one_sink_writes_where_the_sinks_per_tenant_would(tmp_path: Path) -> None:
    one = build_plan(load_config(CASE)).pipelines
    per_tenant = build_plan(load_config(_copy(tmp_path, sinks=False))).pipelines
    assert len({(p.environment, p.sink.name) for p in per_tenant}) == len(per_tenant)
    assert {(p.environment, p.customer): _targets(p) for p in one} == {
        (p.environment, p.customer): _targets(p) for p in per_tenant}
    for p in one:
        assert all(t.split(".")[0] == names.sql_ident(p.customer or "") for t in _targets(p))
    assert {p.sink.target_schemas for p in one} == {tuple(sorted(
        {t.split(".")[0] for p in per_tenant for t in _targets(p)}))}


def test_a_tenant_added_leaves_the_sink_as_it_is(tmp_path: Path) -> None:
    before = _copy(tmp_path / "before")
    after = _copy(tmp_path / "after", tenants="      - name: adopus_hooli\n"
                                               "        customer: hooli\n")
    for root in (before, after):
        assert main(["generate", "--root", str(root)]) == 0
    for env in ("dev", "prod"):
        folder = Path("generated", "pipelines", "accounting", env)
        assert ((after / folder / "sink-accounting.yaml").read_bytes()
                == (before / folder / "sink-accounting.yaml").read_bytes())
        assert (after / folder / "source-accounting-hooli.yaml").is_file()
        assert not (after / folder / "sink-accounting-hooli.yaml").exists()
        sql = Path("generated", "sql", "accounting", env, "sink-schemas.sql")
        assert 'CREATE SCHEMA IF NOT EXISTS "hooli";' in (after / sql).read_text()

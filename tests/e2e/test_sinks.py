"""Generated Debezium JDBC sink connectors, checked against the sources' real output.

The Debezium JDBC sink plugin is on no package registry this suite can use, so the
worker does not have it. The sinks are checked statically instead:

* every config key is a documented key of ``io.debezium.connector.jdbc.JdbcSinkConnector``
  (Debezium 3.x "Connector properties") or of the Kafka Connect framework, with an
  allowed value (:data:`SINK_KEYS`); unknown keys fail;
* ``topics`` is exactly the set of topics the paired source was OBSERVED writing to;
* every ``${source.X}`` of ``collection.name.format`` is a field of the ``source`` block
  of the events observed on those topics, and resolves to ``<schema>.<table>``;
* the ``ReplaceField$Key`` transform excludes the router's key field exactly when the
  observed keys carry it.

The sources run in the session fixtures of tests/e2e/conftest.py (shared with
test_generated_sources.py), so "observed" means records read from the broker.

Real sink run: when ``$CDC_E2E_JDBC_SINK_DIR`` names a plugin directory holding the
Debezium JDBC sink jars, the shared worker gets it on its ``plugin.path`` and
``test_sinks_write_target_rows`` runs the generated test-config sinks against a second
database. Without the variable that test is not defined at all, so it is neither run
nor collected (and never counted as skipped, which fails a CI=true run).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from cdc_generator import connect, localpg

from . import pipelines as pl
from .conftest import ENVIRONMENT, jdbc_sink_dir
from .kafka import Record, consume, list_topics
from .stack import REPO_ROOT

pytestmark = pytest.mark.e2e

Check = Callable[[str], str | None]


def one_of(*allowed: str) -> Check:
    def check(value: str) -> str | None:
        return None if value in allowed else f"must be one of {', '.join(allowed)}"
    return check


def matches(pattern: str, what: str) -> Check:
    def check(value: str) -> str | None:
        return None if re.fullmatch(pattern, value) else f"must be {what}"
    return check


def anything(_value: str) -> str | None:
    return None


BOOLEAN = one_of("true", "false")
POSITIVE_INT = matches(r"[1-9][0-9]*", "a positive integer")
ENV_REF = r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"

#: Debezium 3.x JDBC sink "Connector properties" (jdbc.adoc): key -> allowed values
SINK_KEYS: dict[str, Check] = {
    # Kafka consumer properties
    "topics": matches(r"[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*", "a comma-separated topic list"),
    "topics.regex": anything,
    # connection
    "connection.provider": anything,
    "connection.url": matches(r"jdbc:postgresql://.+", "a jdbc:postgresql:// URL"),
    "connection.username": anything,
    "connection.password": matches(ENV_REF, "a ${env:VAR} reference, never a literal"),
    "connection.pool.min_size": POSITIVE_INT,
    "connection.pool.max_size": POSITIVE_INT,
    "connection.pool.acquire_increment": POSITIVE_INT,
    "connection.pool.timeout": POSITIVE_INT,
    "connection.restart.on.errors": BOOLEAN,
    # runtime
    "use.time.zone": anything,
    "delete.enabled": BOOLEAN,
    "truncate.enabled": BOOLEAN,
    "insert.mode": one_of("insert", "update", "upsert"),
    "primary.key.mode": one_of("none", "kafka", "record_key", "record_value", "record_header"),
    "primary.key.fields": anything,
    "quote.identifiers": BOOLEAN,
    "schema.evolution": one_of("none", "basic"),
    "collection.name.format": anything,  # checked against observed events below
    "dialect.postgres.postgis.schema": anything,
    "batch.size": POSITIVE_INT,
    "use.reduction.buffer": BOOLEAN,
    "field.include.list": anything,
    "field.exclude.list": anything,
    "flush.max.retries": matches(r"[0-9]+", "an integer"),
    "flush.retry.delay.ms": matches(r"[0-9]+", "an integer"),
    # extendable
    "column.naming.strategy": anything,
    "collection.naming.strategy": anything,
    # Kafka Connect framework keys every connector takes
    "key.converter": one_of(JSON_CONVERTER),
    "value.converter": one_of(JSON_CONVERTER),
    # the sources write JSON with schemas; the sink needs the schemas to build tables
    "key.converter.schemas.enable": one_of("true"),
    "value.converter.schemas.enable": one_of("true"),
    "transforms": matches(r"[A-Za-z0-9_]+(,[A-Za-z0-9_]+)*", "a list of aliases"),
    "errors.tolerance": one_of("none", "all"),
    "errors.log.enable": BOOLEAN,
    "errors.log.include.messages": BOOLEAN,
    "errors.deadletterqueue.topic.name": anything,
}

#: Kafka's ReplaceField SMT: its keys besides `type`
REPLACE_FIELD_KEYS = {"exclude", "include", "renames", "replace.null.with.default"}
REPLACE_FIELD_KEY = "org.apache.kafka.connect.transforms.ReplaceField$Key"
PASSTHROUGH_PREFIXES = ("hibernate.", "consumer.override.")


def static_problems(connector: connect.GeneratedConnector) -> list[str]:
    """Everything wrong with a sink config by the documented rules; names file and line."""
    cfg = connector.config
    out: list[str] = []

    def bad(key: str, message: str) -> None:
        line = connector.line_of(key)
        out.append(f"{connector.path}{f':{line}' if line else ''}: spec.config.{key}: {message}")

    if connector.connector_class != pl.SINK_CLASS:
        out.append(f"{connector.path}: spec.class is {connector.connector_class}")
    aliases = [a for a in cfg.get("transforms", "").split(",") if a]
    for key, value in cfg.items():
        if key in SINK_KEYS:
            error = SINK_KEYS[key](value)
            if error:
                bad(key, f"{value!r}: {error}")
        elif key.startswith(PASSTHROUGH_PREFIXES):
            continue
        elif (m := re.fullmatch(r"transforms\.([^.]+)\.(.+)", key)) and m.group(1) in aliases:
            alias, sub = m.groups()
            kind = cfg.get(f"transforms.{alias}.type", "")
            if sub != "type" and kind == REPLACE_FIELD_KEY and sub not in REPLACE_FIELD_KEYS:
                bad(key, f"ReplaceField has no setting {sub!r}")
        else:
            bad(key, "not a documented JdbcSinkConnector or Kafka Connect key")
    for required in ("connection.url", "connection.username", "connection.password"):
        if required not in cfg:
            out.append(f"{connector.path}: spec.config.{required} is required")
    if ("topics" in cfg) == ("topics.regex" in cfg):
        out.append(f"{connector.path}: exactly one of spec.config.topics / topics.regex")
    if cfg.get("delete.enabled") == "true" and cfg.get("primary.key.mode") != "record_key":
        bad("delete.enabled", "true needs primary.key.mode=record_key")
    if cfg.get("insert.mode") == "upsert" and cfg.get("primary.key.mode", "none") == "none":
        bad("insert.mode", "upsert needs a primary key (primary.key.mode other than none)")
    for alias in aliases:
        if f"transforms.{alias}.type" not in cfg:
            bad("transforms", f"alias {alias!r} has no transforms.{alias}.type")
    return out


# --------------------------------------------------------------------------- pairs


@dataclass(frozen=True)
class Pair:
    """A generated sink and the running source whose topics it reads."""

    sink: connect.GeneratedConnector
    source: connect.GeneratedConnector
    running: pl.RunningSources

    def observed(self) -> dict[str, list[Record]]:
        """Records of each topic the source wrote (topics under its prefix)."""
        prefix = self.source.config["topic.prefix"] + "."
        topics = sorted(t for t in list_topics(self.running.stack.bootstrap)
                        if t.startswith(prefix) and "." not in t[len(prefix):])
        assert topics, f"{self.source.path}: no topics under {prefix}* on the broker"
        records = consume(self.running.stack.bootstrap, topics, timeout=pl.WAIT_S,
                          until=lambda rs: {r.topic for r in rs} >= set(topics))
        out: dict[str, list[Record]] = {t: [] for t in topics}
        for record in records:
            if record.value is not None:
                out[record.topic].append(record)
        return out


def pairs_of(root: Path, running: pl.RunningSources) -> Iterator[Pair]:
    generated = connect.load_generated(root, environment=ENVIRONMENT)
    by_name = {c.name: c for c in pl.sources(generated)}
    for sink in pl.sinks(generated):
        source = by_name.get("source-" + sink.name.removeprefix("sink-"))
        assert source is not None, f"{sink.path}: no source connector generated beside it"
        yield Pair(sink, source, running)


@pytest.fixture(scope="module")
def all_pairs(repo_sources: pl.RunningSources, generated_sources: pl.RunningSources,
              generated_root: Path) -> list[Pair]:
    return [*pairs_of(REPO_ROOT, repo_sources), *pairs_of(generated_root, generated_sources)]


def _report(failures: list[str]) -> None:
    assert not failures, "\n".join(failures)


def test_sink_keys_and_values_are_documented(all_pairs: list[Pair]) -> None:
    _report([p for pair in all_pairs for p in static_problems(pair.sink)])


def test_sink_topics_are_what_the_source_emits(all_pairs: list[Pair]) -> None:
    failures = []
    for pair in all_pairs:
        configured = sorted(pair.sink.config["topics"].split(","))
        observed = sorted(pair.observed())
        if configured != observed:
            failures.append(f"{pair.sink.path}: topics {configured} but {pair.source.path} "
                            f"wrote to {observed}")
    _report(failures)


def test_collection_name_format_resolves_from_observed_events(all_pairs: list[Pair]) -> None:
    failures = []
    for pair in all_pairs:
        fmt = pair.sink.config["collection.name.format"]
        labels = yaml.safe_load(pair.sink.text)["metadata"]["labels"]
        # db-per-tenant: the tenant's schema; db-shared: the event's own schema
        customer = labels.get("cdc-generator/customer")
        for topic, records in pair.observed().items():
            for record in records:
                source = pl.source_of(record)
                try:
                    target = pl.resolve_collection_name(fmt, source, topic)
                except AssertionError as exc:
                    failures.append(f"{pair.sink.path}: {exc}")
                    break
                schema = customer.replace("-", "_") if customer else source["schema"]
                if target != f"{schema}.{source['table']}":
                    failures.append(f"{pair.sink.path}: {fmt!r} sends {topic} event of "
                                    f"{source['schema']}.{source['table']} to {target}")
                    break
    _report(failures)


def test_key_field_dropped_exactly_when_the_source_adds_it(all_pairs: list[Pair]) -> None:
    failures = []
    for pair in all_pairs:
        cfg = pair.sink.config
        excluded = {
            field
            for alias in cfg.get("transforms", "").split(",") if alias
            if cfg.get(f"transforms.{alias}.type") == REPLACE_FIELD_KEY
            for field in cfg.get(f"transforms.{alias}.exclude", "").split(",") if field
        }
        for topic, records in pair.observed().items():
            carried = {f for r in records for f in r.key_payload if f == pl.ROUTER_KEY_FIELD}
            if carried != excluded:
                failures.append(f"{pair.sink.path}: keys on {topic} carry {sorted(carried)} "
                                f"but the sink's ReplaceField$Key excludes {sorted(excluded)}")
    _report(failures)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("insert.mod", "upsert", "not a documented JdbcSinkConnector"),
    ("insert.mode", "merge", "must be one of insert, update, upsert"),
    ("primary.key.mode", "record_value", "true needs primary.key.mode=record_key"),
    ("schema.evolution", "advanced", "must be one of none, basic"),
    ("connection.password", "hunter2", "never a literal"),
    ("transforms.dropschema.blacklist", "x", "ReplaceField has no setting 'blacklist'"),
])
def test_static_rules_catch_broken_sinks(key: str, value: str, message: str) -> None:
    (sink,) = pl.sinks(connect.load_generated(REPO_ROOT, environment=ENVIRONMENT,
                                              service="directory"))
    assert static_problems(sink) == []
    broken = connect.GeneratedConnector(sink.path, sink.name, sink.connector_class,
                                        sink.tasks_max, {**sink.config, key: value}, sink.text)
    problems = static_problems(broken)
    assert any(message in p and sink.path in p for p in problems), problems


# --------------------------------------------------------------------------- real sink


def _wait_rows(pg: localpg.LocalPostgres, db: str, query: str, want: set[tuple[object, ...]],
               *, timeout: float, what: str) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    got: set[tuple[object, ...]] = set()
    while time.monotonic() < deadline:
        try:
            with pg.connect(db) as conn:
                got = {tuple(row) for row in conn.execute(query)}
        except psycopg.errors.UndefinedTable:
            got = set()
        if got == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"{what}: target rows {sorted(map(repr, got))}, expected "
                         f"{sorted(map(repr, want))} after {timeout:g} s")


if jdbc_sink_dir() is not None:

    def test_sinks_write_target_rows(generated_sources: pl.RunningSources,
                                     generated_root: Path,
                                     pg_server: localpg.LocalPostgres) -> None:
        """The generated test-config sinks, for real: target rows equal the source rows
        (deletes applied), per tenant schema."""
        stack = generated_sources.stack
        sinks = pl.sinks(connect.load_generated(generated_root, environment=ENVIRONMENT))
        schemas = ("public", "tenant_a", "tenant_b", "alpha", "beta")
        ddl = ";".join(f'CREATE SCHEMA IF NOT EXISTS "{s}"' for s in schemas)
        with pl.databases(pg_server, {"e2e_sink": ddl}), \
                stack.keep_logs_on_failure("sinks"):
            pl.assert_valid(stack.connect_url, sinks)
            created = []
            try:
                for sink in sinks:
                    stack.create(sink.name, sink.rest_config())
                    created.append(sink)
                for sink in sinks:
                    stack.wait_running(sink.name, timeout=90)
                checks: list[tuple[str, str, str, str]] = [
                    # (source db, source table, target table, key columns)
                    ("e2e_sch_db", "tenant_a.items", "tenant_a.items", "id"),
                    ("e2e_sch_db", "tenant_b.items", "tenant_b.items", "id"),
                    ("e2e_rls_db", "public.notes", "public.notes", "id"),
                    ("e2e_pt_alpha", "public.order_lines", "alpha.order_lines",
                     "order_id, line_no"),
                    ("e2e_pt_beta", "public.order_lines", "beta.order_lines",
                     "order_id, line_no"),
                    ("e2e_col_db", "public.memberships", "public.memberships",
                     "org_id, user_id"),
                ]
                for db, table, target, cols in checks:
                    with pg_server.connect(db) as conn:
                        want = {tuple(r) for r in conn.execute(
                            f"SELECT {cols} FROM {table}")}
                    _wait_rows(pg_server, "e2e_sink", f"SELECT {cols} FROM {target}", want,
                               timeout=60.0, what=f"{db}.{table} -> e2e_sink.{target}")
                # the filtered tables: only the matching rows
                for me in ("alpha", "beta"):
                    with pg_server.connect(f"e2e_pt_{me}") as conn:
                        want = {tuple(r) for r in conn.execute(
                            "SELECT id FROM public.orders WHERE tenant = %s", (me,))}
                    _wait_rows(pg_server, "e2e_sink", f"SELECT id FROM {me}.orders", want,
                               timeout=60.0, what=f"e2e_pt_{me}.orders -> e2e_sink.{me}.orders")
            finally:
                pl.stop_sources(stack, created)

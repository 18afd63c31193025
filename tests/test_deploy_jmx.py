"""deploy/connect: the JMX exporter rules the Kafka Connect workers export metrics with.

The rules (deploy/connect/base/metrics-config.yaml, named by the KafkaConnect's
spec.metricsConfig) are run the way the Prometheus JMX exporter (jmx_exporter 1.x,
as Strimzi ships it) runs them, over the MBeans a Kafka Connect 4.3 worker and
Debezium 3.6 register for this repository's generated connectors: every connector
and task state, and every source's lag and connection, must come out as a series.
tests/test_deploy_alerts.py checks that the alerts use only these series.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests.test_deploy import DEPLOY, PIPELINES, docs, one

CONNECT = DEPLOY / "connect" / "base"
Labels = frozenset[tuple[str, str]]

# --- the MBeans, as Kafka Connect 4.3.0 and Debezium 3.6.0.Final register them ------------
#
# Kafka: JmxReporter.getMBeanName() = "kafka.connect:type=<group>" + ",<tag>=<value>" for the
# tags of ConnectMetricsRegistry's templates, in their order (connector, task); attribute
# names are ConnectMetricsRegistry's (checked against connect-runtime-4.3.0.jar).
# Debezium: Metrics.metricName() = "debezium." + contextName ("Postgres").toLowerCase() +
# ":type=connector-metrics,context=<snapshot|streaming>,server=<topic.prefix>"; attributes are
# the getters of StreamingChangeEventSourceMetricsMXBean / SnapshotChangeEventSourceMetricsMXBean.

STATUS = ("unassigned", "running", "paused", "failed", "destroyed", "restarting", "stopped")
TASK_NUMBERS = ("running-ratio", "pause-ratio", "offset-commit-max-time-ms",
                "offset-commit-avg-time-ms", "batch-size-max", "batch-size-avg",
                "offset-commit-failure-percentage", "offset-commit-success-percentage")
TASK_STRINGS = ("task-class", "task-version", "key-converter-class", "key-converter-version",
                "value-converter-class", "value-converter-version", "header-converter-class",
                "header-converter-version")
SOURCE_TASK = ("source-record-poll-rate", "source-record-poll-total", "source-record-write-rate",
               "source-record-write-total", "poll-batch-max-time-ms", "poll-batch-avg-time-ms",
               "source-record-active-count", "source-record-active-count-max",
               "source-record-active-count-avg", "transaction-size-min", "transaction-size-max",
               "transaction-size-avg")
SINK_TASK = ("sink-record-read-rate", "sink-record-read-total", "sink-record-send-rate",
             "sink-record-send-total", "sink-record-lag-max", "partition-count",
             "offset-commit-seq-no", "offset-commit-completion-rate",
             "offset-commit-completion-total", "offset-commit-skip-rate",
             "offset-commit-skip-total", "put-batch-max-time-ms", "put-batch-avg-time-ms",
             "sink-record-active-count", "sink-record-active-count-max",
             "sink-record-active-count-avg")
TASK_ERRORS = ("total-record-failures", "total-record-errors", "total-records-skipped",
               "total-retries", "total-errors-logged", "deadletterqueue-produce-requests",
               "deadletterqueue-produce-failures", "last-error-timestamp")
WORKER = ("connector-count", "task-count", "connector-startup-attempts-total",
          "connector-startup-success-total", "connector-startup-success-percentage",
          "connector-startup-failure-total", "connector-startup-failure-percentage",
          "task-startup-attempts-total", "task-startup-success-total",
          "task-startup-success-percentage", "task-startup-failure-total",
          "task-startup-failure-percentage")
WORKER_CONNECTOR = tuple(f"connector-{s}-task-count"
                         for s in ("total", "running", "paused", "failed", "unassigned",
                                   "destroyed", "restarting"))
DEBEZIUM_COMMON = ("MilliSecondsSinceLastEvent", "TotalNumberOfEventsSeen",
                   "TotalNumberOfCreateEventsSeen", "TotalNumberOfUpdateEventsSeen",
                   "TotalNumberOfDeleteEventsSeen", "NumberOfEventsFiltered",
                   "NumberOfErroneousEvents", "QueueTotalCapacity", "QueueRemainingCapacity",
                   "MaxQueueSizeInBytes", "CurrentQueueSizeInBytes")
DEBEZIUM_STREAMING = ("MilliSecondsBehindSource", "NumberOfCommittedTransactions",
                      "NumberOfUnchangedEventsSkipped", "MilliSecondsBehindSourceMinValue",
                      "MilliSecondsBehindSourceMaxValue", "MilliSecondsBehindSourceAverageValue",
                      "MilliSecondsBehindSourceP50", "MilliSecondsBehindSourceP95",
                      "MilliSecondsBehindSourceP99")
DEBEZIUM_SNAPSHOT = ("TotalTableCount", "RemainingTableCount", "SnapshotDurationInSeconds",
                     "SnapshotPausedDurationInSeconds")
DEBEZIUM_SNAPSHOT_FLAGS = ("SnapshotRunning", "SnapshotPaused", "SnapshotCompleted",
                           "SnapshotAborted", "SnapshotSkipped")

@dataclass(frozen=True)
class Attr:
    """One MBean attribute. `value` a str, bool, int or float; a dict is an MXBean Map."""

    object_name: str
    attribute: str
    value: object


def _jmx_sanitize(value: str) -> str:
    """Kafka's Sanitizer.jmxSanitize: quoted (ObjectName.quote) unless [\\w-%. \\t]*."""
    if re.fullmatch(r"[\w\-%. \t]*", value):
        return value
    return '"' + re.sub(r'([\\"*?])', r"\\\1", value).replace("\n", "\\n") + '"'


def kafka_mbean(group: str, **tags: str) -> str:
    return f"kafka.connect:type={group}" + "".join(
        f",{k}={_jmx_sanitize(v)}" for k, v in tags.items())


def debezium_mbean(context: str, server: str) -> str:
    return ("debezium.postgres:type=connector-metrics"
            f",context={context},server={_jmx_sanitize(server)}")


@dataclass(frozen=True)
class Connector:
    name: str
    source: bool
    tasks: int
    server: str | None  # Debezium's topic.prefix, for sources


def connectors(env: str) -> list[Connector]:
    found = []
    for path in sorted(PIPELINES.glob(f"*/{env}/*.yaml")):
        doc = docs(path)[0]
        if doc["kind"] != "KafkaConnector":
            continue
        source = doc["spec"]["class"].endswith("PostgresConnector")
        found.append(Connector(doc["metadata"]["name"], source, doc["spec"]["tasksMax"],
                               doc["spec"]["config"]["topic.prefix"] if source else None))
    assert found, f"no connectors generated for {env}"
    return found


@dataclass(frozen=True)
class State:
    """What to report: everything running, connected, 1 s behind, unless listed."""

    failed_connectors: frozenset[str] = frozenset()
    failed_tasks: frozenset[tuple[str, int]] = frozenset()
    lag_ms: tuple[tuple[str, int], ...] = ()
    disconnected: frozenset[str] = frozenset()
    snapshotting: frozenset[str] = frozenset()


def mbeans(conns: list[Connector], state: State = State()) -> Iterator[Attr]:
    yield from (Attr(kafka_mbean("connect-worker-metrics"), a, 3) for a in WORKER)
    lag = dict(state.lag_ms)
    for c in conns:
        failed = c.name in state.failed_connectors
        on = kafka_mbean("connector-metrics", connector=c.name)
        yield Attr(on, "status", "failed" if failed else "running")
        yield Attr(on, "connector-type", "source" if c.source else "sink")
        yield Attr(on, "connector-class", "io.debezium.connector.Connector")
        yield Attr(on, "connector-version", "3.6.0.Final")
        counts = kafka_mbean("connect-worker-metrics", connector=c.name)
        yield from (Attr(counts, a, 0) for a in WORKER_CONNECTOR)
        for task in range(c.tasks):
            tags = {"connector": c.name, "task": str(task)}
            on = kafka_mbean("connector-task-metrics", **tags)
            yield Attr(on, "status",
                       "failed" if (c.name, task) in state.failed_tasks else "running")
            yield from (Attr(on, a, 0.5) for a in TASK_NUMBERS)
            yield from (Attr(on, a, "x") for a in TASK_STRINGS)
            group, attrs = ("source-task-metrics", SOURCE_TASK) if c.source else (
                "sink-task-metrics", SINK_TASK)
            yield from (Attr(kafka_mbean(group, **tags), a, 7) for a in attrs)
            yield from (Attr(kafka_mbean("task-error-metrics", **tags), a, 0)
                        for a in TASK_ERRORS)
        if c.server is None:
            continue
        streaming = debezium_mbean("streaming", c.server)
        snapshot = debezium_mbean("snapshot", c.server)
        for on in (streaming, snapshot):
            yield from (Attr(on, a, 11) for a in DEBEZIUM_COMMON)
            yield Attr(on, "LastEvent", "insert")
            yield Attr(on, "CapturedTables", ["public.invoices"])
        yield Attr(streaming, "Connected", c.server not in state.disconnected)
        yield Attr(streaming, "MilliSecondsBehindSource", lag.get(c.server, 1000))
        yield from (Attr(streaming, a, 13) for a in DEBEZIUM_STREAMING[1:])
        yield Attr(streaming, "LastTransactionId", "12345")
        yield Attr(streaming, "SourceEventPosition", {"lsn": "24023128"})
        running = c.server in state.snapshotting
        yield from (Attr(snapshot, a, 2) for a in DEBEZIUM_SNAPSHOT)
        yield from (Attr(snapshot, a, running if a == "SnapshotRunning" else not running)
                    for a in DEBEZIUM_SNAPSHOT_FLAGS)
        yield Attr(snapshot, "RowsScanned", {"public.invoices": 42})


# --- the JMX exporter (jmx_exporter 1.x collector/.../JmxCollector.java), in small ---------

@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    name: str
    value: str | None
    labels: tuple[tuple[str, str], ...]
    type: str
    snake: bool


def load_rules(config: dict[str, Any]) -> list[Rule]:
    rules = []
    for i, raw in enumerate(config["rules"]):
        where = f"metrics-config.yml rules[{i}]"
        unknown = set(raw) - {"pattern", "name", "value", "valueFactor", "labels", "help",
                              "type", "attrNameSnakeCase", "cache"}
        assert not unknown, f"{where}: keys the exporter does not know: {sorted(unknown)}"
        # this model covers named rules only (a rule without name exports the default format)
        assert "pattern" in raw, f"{where}: needs a pattern"
        assert "name" in raw, f"{where}: needs a name"
        assert raw.get("type", "UNKNOWN") in {"GAUGE", "COUNTER", "UNTYPED", "UNKNOWN"}, where
        try:
            # as JmxCollector compiles it: the pattern may match anywhere
            pattern = re.compile("^.*(?:" + raw["pattern"] + ").*$")
        except re.error as e:
            raise AssertionError(f"{where}: pattern is not a valid regex: {e}") from e
        value = None if raw.get("value") is None else str(raw["value"])
        rules.append(Rule(pattern, raw["name"], value, tuple(sorted(raw.get("labels", {}).items())),
                          raw.get("type", "UNKNOWN"), bool(raw.get("attrNameSnakeCase"))))
    return rules


def _properties(object_name: str) -> tuple[str, list[tuple[str, str]]]:
    """domain and key properties in registration order (JmxMBeanPropertyCache's pattern)."""
    domain, _, rest = object_name.partition(":")
    prop = re.compile(r'([^,=:*?]+)=("(?:[^\\"]*(?:\\.)?)*"|[^,=:"]*)')
    props = []
    while rest:
        m = prop.match(rest)
        assert m, f"malformed object name {object_name!r}"
        props.append((m.group(1), m.group(2)))
        rest = rest[m.end():].removeprefix(",")
    return domain, props


def _snake(name: str) -> str:
    out, prev = name[0].lower(), name[0].isupper() or name[0] == "_"
    for c in name[1:]:
        if not prev and c.isupper():
            out += "_"
        out += c.lower()
        prev = c.isupper() or c == "_"
    return out


def _safe(name: str) -> str:
    """JmxCollector.toSafeName: other characters become `_`, runs of `_` collapse."""
    return ("_" if name[:1].isdigit() else "") + re.sub(r"[^a-zA-Z0-9:_]+", "_",
                                                         re.sub(r"_+", "_", name))


def _exposed(name: str, kind: str) -> str:
    """client_java's PrometheusNaming.sanitizeMetricName strips _total/_created/_bucket/_info;
    a counter is written with _total again."""
    while (stripped := re.sub(r"(_total|_created|_bucket|_info)$", "", name)) != name:
        name = stripped
    return name + "_total" if kind == "COUNTER" else name


def _java_replacement(template: str) -> str:
    return re.sub(r"\$(\d+)", r"\\g<\1>", template.replace("\\", "\\\\"))


def _match_names(attr: Attr, snake: bool) -> Iterator[tuple[str, object]]:
    domain, props = _properties(attr.object_name)
    name = _snake(attr.attribute) if snake else attr.attribute
    if isinstance(attr.value, dict):
        # an MXBean Map is TabularData: one row per key, `key` joins the properties
        for key, value in attr.value.items():
            keyed = ", ".join(f"{k}={v}" for k, v in [*props, ("key", str(key))])
            yield f"{domain}<{keyed}><{attr.attribute}>value: {value}", value
        return
    shown = str(attr.value).lower() if isinstance(attr.value, bool) else attr.value
    yield f"{domain}<{', '.join(f'{k}={v}' for k, v in props)}><>{name}: {shown}", attr.value


Series = dict[tuple[str, Labels], float]


def scrape(rules: list[Rule], attrs: Iterator[Attr] | list[Attr]) -> tuple[Series, dict[str, str]]:
    """(name, labels) -> value for every attribute a rule exports, and each name's type."""
    series: Series = {}
    types: dict[str, str] = {}
    for attr in attrs:
        for rule in rules:
            matched = next(((m, v) for text, v in _match_names(attr, rule.snake)
                            if (m := rule.pattern.match(text))), None)
            if matched is None:
                continue
            m, raw = matched
            # the first matching rule decides, even when the value is no number
            value: object = float(m.expand(_java_replacement(rule.value))) if rule.value else raw
            if isinstance(value, bool):
                value = float(value)
            if isinstance(value, int | float):
                name = _exposed(_safe(m.expand(_java_replacement(rule.name))).lower(), rule.type)
                labels = frozenset((_safe(m.expand(_java_replacement(k))).lower(),
                                    m.expand(_java_replacement(v))) for k, v in rule.labels)
                assert (name, labels) not in series, f"two values for {name}{dict(labels)}"
                assert types.setdefault(name, rule.type) == rule.type, f"{name}: two types"
                series[(name, labels)] = float(value)
            break
    return series, types


def exporter_config() -> dict[str, Any]:
    configmap = one(CONNECT / "metrics-config.yaml", "ConfigMap")
    ref = one(CONNECT / "kafka-connect.yaml", "KafkaConnect")["spec"]["metricsConfig"]
    key = ref["valueFrom"]["configMapKeyRef"]
    assert key["name"] == configmap["metadata"]["name"]
    config: dict[str, Any] = yaml.safe_load(configmap["data"][key["key"]])
    return config


def exported(state: State = State(), env: str = "prod") -> Series:
    return scrape(load_rules(exporter_config()), list(mbeans(connectors(env), state)))[0]


def find(series: Series, name: str, **labels: str) -> list[float]:
    want = set(labels.items())
    return [v for (n, ls), v in series.items() if n == name and want <= ls]


# --- the exporter rules --------------------------------------------------------------------

def test_kafka_connect_exports_metrics_with_these_rules() -> None:
    connect = one(CONNECT / "kafka-connect.yaml", "KafkaConnect")
    assert connect["spec"]["metricsConfig"]["type"] == "jmxPrometheusExporter"
    kustomization = docs(CONNECT / "kustomization.yaml")[0]
    assert "metrics-config.yaml" in kustomization["resources"]
    config = exporter_config()
    assert config["lowercaseOutputName"] is True
    assert load_rules(config)


def test_every_connector_and_task_state_is_exported() -> None:
    conns = connectors("prod")
    series = exported()
    for c in conns:
        assert find(series, "kafka_connect_connector_status",
                    connector=c.name, status="running") == [1.0], c.name
        for task in range(c.tasks):
            assert find(series, "kafka_connect_connector_task_status", connector=c.name,
                        task=str(task), status="running") == [1.0], (c.name, task)
        assert find(series, "kafka_connect_worker_connector_failed_task_count",
                    connector=c.name) == [0.0]
    failed = conns[0]
    series = exported(State(failed_connectors=frozenset({failed.name}),
                            failed_tasks=frozenset({(failed.name, 0)})))
    assert find(series, "kafka_connect_connector_status", connector=failed.name,
                status="failed") == [1.0]
    assert find(series, "kafka_connect_connector_task_status", connector=failed.name,
                task="0", status="failed") == [1.0]
    assert not find(series, "kafka_connect_connector_status", connector=failed.name,
                    status="running")


def test_every_source_reports_lag_and_connection() -> None:
    sources = [c for c in connectors("prod") if c.server]
    assert sources
    late = sources[0].server
    assert late is not None
    series = exported(State(lag_ms=((late, 600_000),), disconnected=frozenset({late})))
    for c in sources:
        assert c.server is not None
        lag = find(series, "debezium_postgres_streaming_milli_seconds_behind_source",
                   server=c.server)
        assert lag == [600_000.0 if c.server == late else 1000.0], c.server
        connected = find(series, "debezium_postgres_streaming_connected", server=c.server)
        assert connected == [0.0 if c.server == late else 1.0], c.server
        assert find(series, "debezium_postgres_snapshot_snapshot_running",
                    server=c.server) == [0.0]


def test_rules_export_counters_with_total_and_skip_strings() -> None:
    series = exported()
    names = {n for n, _ in series}
    assert "kafka_connect_worker_task_startup_failure_total" in names
    assert "kafka_connect_source_task_source_record_poll_total" in names
    for n in names:
        assert re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n), n
    # strings (task-class, LastTransactionId) and maps (RowsScanned) are not numbers
    assert not [n for n in names if "class" in n or "transaction_id" in n or "rows_scanned" in n]


def test_a_rule_that_matches_nothing_fails_the_check() -> None:
    config = exporter_config()
    for rule in config["rules"]:
        rule["pattern"] = rule["pattern"].replace("connector-task-metrics", "connector-tasks")
    series, _ = scrape(load_rules(config), list(mbeans(connectors("prod"))))
    assert not [n for n, _ in series if n == "kafka_connect_connector_task_status"]
    broken = exporter_config()
    broken["rules"][0]["pattern"] = "kafka.connect<type=(connector-metrics"
    with pytest.raises(AssertionError, match=r"rules\[0\]: pattern is not a valid regex"):
        load_rules(broken)



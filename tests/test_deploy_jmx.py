"""deploy/connect: the JMX exporter rules the Kafka Connect workers export metrics with.

The rules (deploy/connect/base/metrics-config.yaml, named by the KafkaConnect's
spec.metricsConfig) are run by the Prometheus JMX exporter itself (its collector
1.6.0, the version Strimzi's images ship; tests/jmx-exporter/Scrape.java) over
MBeans registered under the names, and with the attributes, a Kafka Connect 4.3
worker and Debezium 3.6 give theirs for this repository's generated connectors:
every connector and task state, and every source's lag and connection, must come
out as a series. tests/test_deploy_alerts.py checks that the alerts use only
these series.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO
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

# AbstractStatus.State, lower-cased: the values of both `status` attributes
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
# Map<String, Long> attributes (ActivityMonitoringMXBean, SnapshotMetricsMXBean): per table
DEBEZIUM_STREAMING_MAPS = ("NumberOfCreateEventsSeen", "NumberOfUpdateEventsSeen",
                           "NumberOfDeleteEventsSeen", "NumberOfTruncateEventsSeen")
ROWS_SCANNED = {"public.invoices": 42, "public.invoice_lines": 420}
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
    connector_status: tuple[tuple[str, str], ...] = ()
    failed_tasks: frozenset[tuple[str, int]] = frozenset()
    lag_ms: tuple[tuple[str, int], ...] = ()
    disconnected: frozenset[str] = frozenset()
    snapshotting: frozenset[str] = frozenset()


def mbeans(conns: list[Connector], state: State = State()) -> Iterator[Attr]:
    yield from (Attr(kafka_mbean("connect-worker-metrics"), a, 3) for a in WORKER)
    lag, status = dict(state.lag_ms), dict(state.connector_status)
    for c in conns:
        failed = c.name in state.failed_connectors
        on = kafka_mbean("connector-metrics", connector=c.name)
        yield Attr(on, "status", status.get(c.name, "failed" if failed else "running"))
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
        yield Attr(snapshot, "RowsScanned", ROWS_SCANNED)
        yield Attr(snapshot, "TableChunkCounts", {})
        yield from (Attr(streaming, a, dict(ROWS_SCANNED)) for a in DEBEZIUM_STREAMING_MAPS)


# --- the JMX exporter, for real ------------------------------------------------------------
#
# tests/jmx-exporter/Scrape.java registers the MBeans above in a JVM and scrapes them with
# the exporter's JmxCollector (the version pom.xml pins, Strimzi's), as the agent in a
# worker does. Java 17+ and Maven are needed, for the classpath; without them the tests
# fail, they never skip.

SCRAPER = REPO / "tests" / "jmx-exporter"
Series = dict[tuple[str, Labels], float]
# what the exporter adds about itself and the JVM, next to what the rules give
OWN = ("jmx_", "jvm_", "process_")
# the keys a rule of jmx_exporter 1.x reads (JmxCollector.loadConfig); others it ignores
RULE_KEYS = {"pattern", "name", "value", "valueFactor", "labels", "help", "type",
             "attrNameSnakeCase", "cache"}


@dataclass(frozen=True)
class Exporter:
    java: str
    classpath: str

    def scrape(self, config: dict[str, Any], attrs: Iterator[Attr], tmp: Path) -> Series:
        beans: dict[str, dict[str, object]] = {}
        for attr in attrs:
            beans.setdefault(attr.object_name, {})[attr.attribute] = attr.value
        (tmp / "config.yml").write_text(yaml.safe_dump(config))
        (tmp / "mbeans.json").write_text(json.dumps(
            [{"name": name, "attributes": values} for name, values in beans.items()]))
        done = subprocess.run([self.java, "-cp", self.classpath, str(SCRAPER / "Scrape.java"),
                               str(tmp / "config.yml"), str(tmp / "mbeans.json")],
                              capture_output=True, text=True, check=False, timeout=300)
        if done.returncode != 0:
            raise ExporterError(done.stderr)
        return parse_exposition(done.stdout)


class ExporterError(Exception):
    """The exporter refused the rules or failed to scrape: its stderr."""


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?')


def parse_exposition(text: str) -> Series:
    series: Series = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        if name.startswith(OWN):
            continue
        key = (name, frozenset(_LABEL.findall(labels or "")))
        assert key not in series, f"two samples for {line!r}"
        series[key] = float(value)
    return series


@functools.cache
def start_exporter() -> Exporter:
    """java, and the exporter's classpath as mvn resolves pom.xml (once per test run)."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    if not java or not mvn:
        pytest.fail("java (17 or later) and mvn are needed to run the JMX exporter rules "
                    "in the exporter itself (tests/jmx-exporter/)")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "classpath.txt"
        done = subprocess.run([mvn, "-q", "-B", "-f", str(SCRAPER / "pom.xml"),
                               "dependency:build-classpath", f"-Dmdep.outputFile={out}"],
                              capture_output=True, text=True, check=False, timeout=600)
        assert done.returncode == 0, f"mvn could not resolve pom.xml:\n{done.stdout}{done.stderr}"
        return Exporter(java, out.read_text().strip())


@pytest.fixture
def exporter() -> Exporter:
    return start_exporter()


def exporter_config() -> dict[str, Any]:
    configmap = one(CONNECT / "metrics-config.yaml", "ConfigMap")
    ref = one(CONNECT / "kafka-connect.yaml", "KafkaConnect")["spec"]["metricsConfig"]
    key = ref["valueFrom"]["configMapKeyRef"]
    assert key["name"] == configmap["metadata"]["name"]
    config: dict[str, Any] = yaml.safe_load(configmap["data"][key["key"]])
    return config


_SCRAPED: dict[str, Series] = {}


def exported(exporter: Exporter, tmp: Path, state: State = State(), env: str = "prod",
             config: dict[str, Any] | None = None) -> Series:
    """What the exporter gives for `env`'s connectors in `state` (one JVM per new question)."""
    config = exporter_config() if config is None else config
    key = json.dumps([config, repr(state), env], sort_keys=True)
    if key not in _SCRAPED:
        _SCRAPED[key] = exporter.scrape(config, mbeans(connectors(env), state), tmp)
    return _SCRAPED[key]


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
    for i, rule in enumerate(config["rules"]):
        # the exporter ignores keys it does not know: a misspelt one would do nothing
        assert set(rule) <= RULE_KEYS, f"rules[{i}]: {sorted(set(rule) - RULE_KEYS)}"
        assert {"pattern", "name"} <= set(rule), f"rules[{i}] needs a pattern and a name"


def test_every_connector_and_task_state_is_exported(exporter: Exporter, tmp_path: Path) -> None:
    conns = connectors("prod")
    series = exported(exporter, tmp_path)
    for c in conns:
        assert find(series, "kafka_connect_connector_status",
                    connector=c.name, status="running") == [1.0], c.name
        for task in range(c.tasks):
            assert find(series, "kafka_connect_connector_task_status", connector=c.name,
                        task=str(task), status="running") == [1.0], (c.name, task)
        assert find(series, "kafka_connect_worker_connector_failed_task_count",
                    connector=c.name) == [0.0]
    failed = conns[0]
    series = exported(exporter, tmp_path, State(failed_connectors=frozenset({failed.name}),
                                                failed_tasks=frozenset({(failed.name, 0)})))
    assert find(series, "kafka_connect_connector_status", connector=failed.name,
                status="failed") == [1.0]
    assert find(series, "kafka_connect_connector_task_status", connector=failed.name,
                task="0", status="failed") == [1.0]
    assert not find(series, "kafka_connect_connector_status", connector=failed.name,
                    status="running")


def test_every_state_kafka_connect_reports_is_exported(exporter: Exporter,
                                                       tmp_path: Path) -> None:
    conns = connectors("prod")
    assert len(conns) >= len(STATUS), "fewer connectors than states"
    given = tuple((c.name, STATUS[i % len(STATUS)]) for i, c in enumerate(conns))
    series = exported(exporter, tmp_path, State(connector_status=given))
    for name, status in given:
        assert find(series, "kafka_connect_connector_status", connector=name) == [1.0], name
        assert find(series, "kafka_connect_connector_status", connector=name,
                    status=status) == [1.0], (name, status)


def test_every_source_reports_lag_and_connection(exporter: Exporter, tmp_path: Path) -> None:
    sources = [c for c in connectors("prod") if c.server]
    assert sources
    late = sources[0].server
    assert late is not None
    series = exported(exporter, tmp_path,
                      State(lag_ms=((late, 600_000),), disconnected=frozenset({late})))
    for c in sources:
        assert c.server is not None
        lag = find(series, "debezium_postgres_streaming_milli_seconds_behind_source",
                   server=c.server)
        assert lag == [600_000.0 if c.server == late else 1000.0], c.server
        connected = find(series, "debezium_postgres_streaming_connected", server=c.server)
        assert connected == [0.0 if c.server == late else 1.0], c.server
        assert find(series, "debezium_postgres_snapshot_snapshot_running",
                    server=c.server) == [0.0]
        # Map attributes: one series per table
        for table, rows in ROWS_SCANNED.items():
            assert find(series, "debezium_postgres_snapshot_rows_scanned", server=c.server,
                        table=table) == [float(rows)]


def test_rules_export_counters_with_total_and_skip_strings(exporter: Exporter,
                                                           tmp_path: Path) -> None:
    series = exported(exporter, tmp_path)
    names = {n for n, _ in series}
    assert "kafka_connect_worker_task_startup_failure_total" in names
    assert "kafka_connect_source_task_source_record_poll_total" in names
    # strings (task-class, LastTransactionId, SourceEventPosition) are not numbers
    assert not [n for n in names if "class" in n or "transaction_id" in n or "position" in n]
    # only what the rules name: the exporter's default format would start with the domain
    assert all(n.startswith(("kafka_connect_", "debezium_postgres_")) for n in names)


def test_a_rule_that_matches_nothing_exports_nothing(exporter: Exporter, tmp_path: Path) -> None:
    config = exporter_config()
    for rule in config["rules"]:
        rule["pattern"] = rule["pattern"].replace("connector-task-metrics", "connector-tasks")
    series = exported(exporter, tmp_path, config=config)
    assert series
    assert not find(series, "kafka_connect_connector_task_status")


def test_the_exporter_refuses_a_broken_pattern(exporter: Exporter, tmp_path: Path) -> None:
    config = exporter_config()
    config["rules"][0]["pattern"] = "kafka.connect<type=(connector-metrics"
    with pytest.raises(ExporterError, match="PatternSyntaxException"):
        exported(exporter, tmp_path, config=config)

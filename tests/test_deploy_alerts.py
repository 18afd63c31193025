"""deploy/monitoring: the alerts, checked by promtool on series the exporter rules produce.

The PrometheusRule (deploy/monitoring/base/prometheus-rule.yaml) is parsed as
PromQL and must use only series the JMX exporter rules (tests/test_deploy_jmx.py)
or postgres_exporter produce; `promtool check rules` validates it, and
`promtool test rules` makes each alert fire for its fault, only after its `for`,
and stay quiet otherwise, on series produced from the MBeans of the generated
connectors.

promtool comes from PATH, or from Debian's or Ubuntu's `prometheus` package,
downloaded with `apt-get download` and unpacked into a cache (never installed).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.test_deploy import DEPLOY, PIPELINES, docs, environments, one
from tests.test_deploy_jmx import (
    CONNECT,
    Connector,
    Exporter,
    State,
    connectors,
    exported,
    start_exporter,
)

RULES_FILE = DEPLOY / "monitoring" / "base" / "prometheus-rule.yaml"
# postgres_exporter's replication_slots collector (collector/pg_replication_slots.go, on by
# default): pg_replication_slots_{active,pg_wal_lsn_diff}{slot_name, database}
POSTGRES_EXPORTER = {"pg_replication_slots_active": {"slot_name", "database"},
                     "pg_replication_slots_pg_wal_lsn_diff": {"slot_name", "database"}}
# labels Prometheus adds when it scrapes a target (PodMonitor: namespace, pod, container,
# endpoint, job, instance)
SCRAPE_LABELS = {"namespace", "pod", "container", "endpoint", "job", "instance"}


# --- the alerts ----------------------------------------------------------------------------

@pytest.fixture
def exporter() -> Exporter:
    """The JMX exporter itself (tests/test_deploy_jmx.py)."""
    return start_exporter()


def prometheus_rule() -> dict[str, Any]:
    rule = one(RULES_FILE, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return rule


def alerts() -> list[dict[str, Any]]:
    return [r for g in prometheus_rule()["spec"]["groups"] for r in g["rules"] if "alert" in r]


def selectors(expr: Any) -> Iterator[promql_parser.VectorSelector]:
    """Every vector selector in a parsed PromQL expression."""
    if isinstance(expr, promql_parser.VectorSelector):
        yield expr
    elif isinstance(expr, promql_parser.MatrixSelector):
        yield expr.vector_selector
    elif isinstance(expr, promql_parser.BinaryExpr):
        yield from selectors(expr.lhs)
        yield from selectors(expr.rhs)
    elif isinstance(expr, promql_parser.Call):
        for arg in expr.args:
            yield from selectors(arg)
    elif isinstance(expr, promql_parser.AggregateExpr | promql_parser.ParenExpr
                    | promql_parser.UnaryExpr | promql_parser.SubqueryExpr):
        yield from selectors(expr.expr)


def produced_labels(exporter: Exporter, tmp: Path) -> dict[str, set[str]]:
    """metric name -> label names, for every series the exporter rules or postgres_exporter give."""
    out: dict[str, set[str]] = {n: set(ls) for n, ls in POSTGRES_EXPORTER.items()}
    for name, labels in exported(exporter, tmp, faults()[0]):
        out.setdefault(name, set()).update(k for k, _ in labels)
    return out


def test_alerts_use_only_series_that_are_produced(exporter: Exporter, tmp_path: Path) -> None:
    produced = produced_labels(exporter, tmp_path)
    problems = []
    for alert in alerts():
        found = list(selectors(promql_parser.parse(alert["expr"])))
        assert found, f"{alert['alert']}: no series in {alert['expr']!r}"
        for selector in found:
            if selector.name not in produced:
                problems.append(f"{alert['alert']}: no exporter produces {selector.name}")
                continue
            for matcher in selector.matchers.matchers:
                if matcher.name not in produced[selector.name] | SCRAPE_LABELS:
                    problems.append(f"{alert['alert']}: no label {matcher.name} on {selector.name}")
    assert not problems, "\n".join(problems)


def test_the_alert_check_fails_for_a_name_no_rule_produces(exporter: Exporter,
                                                          tmp_path: Path) -> None:
    produced = produced_labels(exporter, tmp_path)
    # a plausible name that no rule here produces, next to one that is produced
    parsed = promql_parser.parse('kafka_connect_connector_state{status="failed"} > 0 '
                                 'or debezium_postgres_streaming_connected == 0')
    assert [s.name for s in selectors(parsed) if s.name not in produced] == [
        "kafka_connect_connector_state"]


def test_slot_alerts_select_every_generated_slot() -> None:
    slots = {docs(p)[0]["spec"]["config"]["slot.name"] for p in PIPELINES.glob("*/*/source-*.yaml")}
    assert slots
    for alert in alerts():
        for selector in selectors(promql_parser.parse(alert["expr"])):
            for m in selector.matchers.matchers:
                if m.name == "slot_name":
                    assert m.op == promql_parser.MatchOp.Re
                    # Prometheus anchors label regexes
                    assert all(re.fullmatch(m.value, s) for s in slots), (alert["alert"], m.value)
                    assert not re.fullmatch(m.value, "some_other_slot")


def test_alerts_the_issue_asks_for_exist() -> None:
    uses = {a["alert"]: {s.name for s in selectors(promql_parser.parse(a["expr"]))}
            for a in alerts()}
    wanted = {"kafka_connect_connector_status", "kafka_connect_connector_task_status",
              "debezium_postgres_streaming_milli_seconds_behind_source",
              "debezium_postgres_streaming_connected", "pg_replication_slots_pg_wal_lsn_diff"}
    assert wanted <= set().union(*uses.values())
    for alert in alerts():
        assert alert["labels"]["severity"] in {"warning", "critical"}, alert["alert"]
        assert alert["annotations"]["summary"], alert["alert"]


def test_monitoring_is_deployed_per_environment() -> None:
    assert set(docs(DEPLOY / "monitoring" / "base" / "kustomization.yaml")[0]["resources"]) == {
        p.name for p in (DEPLOY / "monitoring" / "base").glob("*.yaml")
        if p.name != "kustomization.yaml"}
    for env, namespace in environments().items():
        overlay = docs(DEPLOY / "monitoring" / env / "kustomization.yaml")[0]
        assert overlay["namespace"] == namespace
        assert overlay["resources"] == ["../base"]


def test_pod_monitor_scrapes_the_kafka_connect_pods() -> None:
    monitor = one(DEPLOY / "monitoring" / "base" / "pod-monitor.yaml", "PodMonitor")
    connect = one(CONNECT / "kafka-connect.yaml", "KafkaConnect")
    # the labels and port name Strimzi gives the pods of a KafkaConnect with metricsConfig
    # (ResourceLabels.STRIMZI_KIND_LABEL / STRIMZI_CLUSTER_LABEL, MetricsModel.METRICS_PORT_NAME)
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "strimzi.io/kind": "KafkaConnect", "strimzi.io/cluster": connect["metadata"]["name"]}
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] == "tcp-prometheus"


# --- promtool ------------------------------------------------------------------------------

def _cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cdc-generator"


def _apt_download(dest: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["apt-get", "download", "prometheus"], cwd=dest,
                          capture_output=True, text=True, check=False, timeout=300)


def _fetch_promtool(target: Path) -> None:
    """Unpack Debian's/Ubuntu's `prometheus` package (it ships promtool) into the cache."""
    if not shutil.which("apt-get"):
        pytest.fail("promtool is needed: put it on PATH (a Prometheus release, or the "
                    "`prometheus` package of Debian or Ubuntu)")
    with tempfile.TemporaryDirectory() as tmp:
        done = _apt_download(Path(tmp))
        if done.returncode != 0:
            # an empty or stale package list: refresh it where we may
            sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
            subprocess.run([*sudo, "apt-get", "update", "-qq"], capture_output=True,
                           check=False, timeout=300)
            done = _apt_download(Path(tmp))
        if done.returncode != 0:
            pytest.fail(f"promtool not on PATH and `apt-get download prometheus` failed:\n"
                        f"{done.stderr}")
        [deb] = Path(tmp).glob("prometheus_*.deb")
        unpacked = Path(tmp) / "x"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(unpacked)], check=True, timeout=300)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(unpacked / "usr" / "bin" / "promtool", target)


@pytest.fixture(scope="session")
def promtool() -> Path:
    found = shutil.which("promtool")
    if found:
        return Path(found)
    cached = _cache() / "promtool"
    if not cached.is_file():
        _fetch_promtool(cached)
    return cached


def run_promtool(promtool: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *args], capture_output=True, text=True, check=False,
                          timeout=120)


def rules_file(tmp_path: Path, spec: dict[str, Any], *, annotations: bool = True) -> Path:
    groups = spec["groups"]
    if not annotations:
        groups = [{**g, "rules": [{k: v for k, v in r.items() if k != "annotations"}
                                  for r in g["rules"]]} for g in groups]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def test_promtool_checks_the_rules(promtool: Path, tmp_path: Path) -> None:
    rules = rules_file(tmp_path, prometheus_rule()["spec"])
    done = run_promtool(promtool, "check", "rules", str(rules))
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_rejects_a_broken_rule(promtool: Path, tmp_path: Path) -> None:
    spec = prometheus_rule()["spec"]
    spec["groups"][0]["rules"][0]["expr"] = "max by (connector) (kafka_connect_connector_status"
    spec["groups"][1]["rules"][0]["annotations"]["summary"] = "{{ $labels.server "
    done = run_promtool(promtool, "check", "rules", str(rules_file(tmp_path, spec)))
    assert done.returncode != 0
    assert "unclosed left parenthesis" in done.stdout + done.stderr
    assert "template" in done.stdout + done.stderr


# The scenario: prod's connectors on one worker pod; one connector and one task failed, one
# source 10 minutes behind and disconnected, another disconnected while snapshotting; two
# slots of sources: one retaining 20 GiB, one inactive. Each alert must fire exactly for
# its faults, only after its `for`, and never for the rest.

POD = "cdc-connect-connect-0"
MINUTES = 30


def _series_text(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def faults() -> tuple[State, list[Connector], list[Connector]]:
    """prod's connectors with a failed sink, a failed source task, a source 10 minutes behind
    and disconnected, and another disconnected while it snapshots; (state, sources, sinks)."""
    conns = connectors("prod")
    sources = [c for c in conns if c.server]
    sinks = [c for c in conns if not c.server]
    assert len(sources) >= 3, "the scenario needs three sources"
    assert sinks, "the scenario needs a sink"
    late, snapshotting = sources[0].server, sources[1].server
    assert late is not None
    assert snapshotting is not None
    state = State(failed_connectors=frozenset({sinks[0].name}),
                  failed_tasks=frozenset({(sources[2].name, 0)}),
                  lag_ms=((late, 600_000),),
                  disconnected=frozenset({late, snapshotting}),
                  snapshotting=frozenset({snapshotting}))
    return state, sources, sinks


def scenario(exporter: Exporter,
             tmp: Path) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, str]]]]:
    namespace = environments()["prod"]
    state, sources, sinks = faults()
    late = sources[0].server
    assert late is not None
    scraped = {"namespace": namespace, "pod": POD}
    inputs: list[dict[str, Any]] = [
        {"series": _series_text(n, dict(ls) | scraped), "values": f"{v:g}x{MINUTES}"}
        for (n, ls), v in exported(exporter, tmp, state).items()]
    slots = [docs(p)[0]["spec"]["config"]["slot.name"]
             for p in sorted(PIPELINES.glob("*/prod/source-*.yaml"))]
    full, idle = slots[0], slots[1]
    pg = {"job": "postgres-exporter", "instance": "pg-adopus:9187"}
    for slot in slots:
        labels = pg | {"slot_name": slot, "database": "db"}
        inputs.append({"series": _series_text("pg_replication_slots_pg_wal_lsn_diff", labels),
                       "values": f"{20 * 2**30 if slot == full else 2**20}x{MINUTES}"})
        inputs.append({"series": _series_text("pg_replication_slots_active", labels),
                       "values": f"{0 if slot == idle else 1}x{MINUTES}"})
    # a slot of something else: never alerted on
    other = pg | {"slot_name": "standby_1", "database": "db"}
    inputs.append({"series": _series_text("pg_replication_slots_active", other),
                   "values": f"0x{MINUTES}"})
    expected: dict[str, list[dict[str, str]]] = {
        "CdcConnectorFailed": [{"severity": "critical", "namespace": namespace,
                                "connector": sinks[0].name}],
        "CdcTaskFailed": [{"severity": "critical", "namespace": namespace,
                           "connector": sources[2].name, "task": "0"}],
        "CdcStreamingLagHigh": [{"severity": "warning", "namespace": namespace, "server": late}],
        "CdcSourceNotConnected": [{"severity": "critical", "namespace": namespace, "pod": POD,
                                   "server": late}],
        "CdcReplicationSlotRetainingWal": [pg | {"severity": "warning", "slot_name": full,
                                                 "database": "db"}],
        "CdcReplicationSlotInactive": [pg | {"severity": "warning", "slot_name": idle,
                                             "database": "db"}],
    }
    return inputs, expected


def unit_tests(rules: Path, inputs: list[dict[str, Any]],
               expected: dict[str, list[dict[str, str]]]) -> dict[str, Any]:
    late = f"{MINUTES - 1}m"
    return {"rule_files": [str(rules)], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": inputs,
        "alert_rule_test": [
            # before any `for` has passed nothing fires; at the end exactly the faults do
            *({"eval_time": "3m", "alertname": name, "exp_alerts": []} for name in expected),
            *({"eval_time": late, "alertname": name,
               "exp_alerts": [{"exp_labels": labels} for labels in alerts_]}
              for name, alerts_ in expected.items()),
        ],
    }]}


def test_promtool_unit_tests_fire_each_alert(promtool: Path, exporter: Exporter,
                                            tmp_path: Path) -> None:
    inputs, expected = scenario(exporter, tmp_path)
    assert set(expected) == {a["alert"] for a in alerts()}, "every alert has a case"
    # promtool compares annotations too; they are checked against the alert's labels below
    rules = rules_file(tmp_path, prometheus_rule()["spec"], annotations=False)
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(unit_tests(rules, inputs, expected), sort_keys=False))
    done = run_promtool(promtool, "test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr
    # every $labels.X an annotation shows is a label the alert carries
    for alert in alerts():
        shown = set(re.findall(r"\$labels\.(\w+)",
                               " ".join(alert["annotations"].values())))
        [labels] = expected[alert["alert"]]
        assert shown <= set(labels), f"{alert['alert']}: {sorted(shown - set(labels))}"


def test_promtool_unit_tests_fail_when_an_alert_misses_its_fault(promtool: Path,
                                                                 exporter: Exporter,
                                                                 tmp_path: Path) -> None:
    inputs, expected = scenario(exporter, tmp_path)
    spec = prometheus_rule()["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "CdcTaskFailed":  # a typo in the status the rules export
                rule["expr"] = rule["expr"].replace('status="failed"', 'status="FAILED"')
    rules = rules_file(tmp_path, spec, annotations=False)
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(unit_tests(rules, inputs, expected), sort_keys=False))
    done = run_promtool(promtool, "test", "rules", str(test_file))
    assert done.returncode != 0
    assert "CdcTaskFailed" in done.stdout + done.stderr


def test_promtool_is_a_real_promtool(promtool: Path) -> None:
    done = run_promtool(promtool, "--version")
    assert done.returncode == 0, done.stderr
    assert "promtool, version" in done.stdout + done.stderr

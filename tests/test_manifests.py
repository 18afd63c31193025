"""Structural guarantees of every generated manifest, independent of golden bytes.

Runs over this repository's own output and every golden case: Strimzi v1
schema validity, unique and valid slot names, topic prefixes and topics,
sinks reading exactly what their sources emit, no resolved secrets.
"""

from __future__ import annotations

import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from cdc_generator.cli import main
from tests.helpers import GOLDEN, REPO

STRIMZI = Draft202012Validator(
    json.loads((Path(__file__).parent / "strimzi" / "kafkaconnector-v1.schema.json").read_text())
)
SLOT = re.compile(r"^[a-z0-9_]{1,63}$")
# the only ${...} allowed in output: Kafka config-provider refs and the sink's
# per-record placeholders
# config-provider references (environments.<env>.secrets) and Debezium's own
ALLOWED_REFS = re.compile(r"\$\{(env:[A-Za-z_][A-Za-z0-9_]*|dir:(/[A-Za-z0-9._-]+)+:[A-Za-z_]\w*"
                          r"|secrets:[a-z0-9-]+/[a-z0-9.-]+:[A-Za-z_]\w*|source\.(schema|table)|topic)\}")

TREES = {"this-repo": REPO} | {
    f"golden-{p.name}": p / "input" for p in sorted(GOLDEN.iterdir()) if (p / "input").is_dir()
}


@pytest.fixture(scope="module", params=sorted(TREES))
def generated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = TREES[request.param]
    root = tmp_path_factory.mktemp(request.param) / "repo"
    root.mkdir()
    shutil.copy(src / "server-groups.yaml", root)
    shutil.copytree(src / "services", root / "services")
    if (src / "templates").is_dir():
        shutil.copytree(src / "templates", root / "templates")
    assert main(["generate", "--root", str(root)]) == 0
    return root / "generated"


def _connectors(generated: Path) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted(generated.rglob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("kind") == "KafkaConnector":
            out.append((path, doc))
    return out


def test_every_connector_is_a_valid_strimzi_v1_kafkaconnector(generated: Path) -> None:
    connectors = _connectors(generated)
    assert connectors
    for path, doc in connectors:
        errors = [e.message for e in STRIMZI.iter_errors(doc)]
        assert not errors, f"{path}: {errors}"


def test_slots_prefixes_and_topics_are_unique_per_environment(generated: Path) -> None:
    per_env: dict[str, Counter[str]] = {}
    for path, doc in _connectors(generated):
        env = path.parent.name
        config = doc["spec"]["config"]
        if doc["spec"]["class"].endswith("PostgresConnector"):
            assert SLOT.match(config["slot.name"]), config["slot.name"]
            assert config["plugin.name"] == "pgoutput"
            counter = per_env.setdefault(env, Counter())
            counter["slot:" + config["slot.name"]] += 1
            counter["prefix:" + config["topic.prefix"]] += 1
    assert per_env, "no source connector found"
    for env, counter in per_env.items():
        dupes = [k for k, n in counter.items() if n > 1]
        assert not dupes, f"{env}: {dupes}"


def test_sinks_read_exactly_what_sources_emit(generated: Path) -> None:
    by_dir: dict[Path, dict[str, dict[str, Any]]] = {}
    for path, doc in _connectors(generated):
        by_dir.setdefault(path.parent, {})[path.name] = doc
    assert by_dir
    for directory, docs in by_dir.items():
        for name, source in docs.items():
            if not name.startswith("source-"):
                continue
            sink = docs.get("sink-" + name.removeprefix("source-")) or _one_sink(docs)
            config = source["spec"]["config"]
            prefix = config["topic.prefix"]
            tables = [t.replace("\\.", ".") for t in config["table.include.list"].split(",")]
            # the control tables (the signal table Debezium reads, the heartbeat table)
            # are captured for the source's own sake; no sink reads them
            control = {config["signal.data.collection"],
                       config["heartbeat.action.query"].split('"')[1] + "."
                       + config["heartbeat.action.query"].split('"')[3]}
            assert control <= set(tables), directory
            expected = {f"{prefix}.{t.split('.', 1)[1]}" for t in tables if t not in control}
            sink_config = sink["spec"]["config"]
            if "topics.regex" in sink_config:  # sinks: one-per-service
                read = {t for t in {f"{prefix}.{t.split('.', 1)[1]}" for t in tables}
                        | {f"__debezium-heartbeat.{prefix}"}
                        if re.fullmatch(sink_config["topics.regex"], t)}
                assert read == expected, directory
            else:
                assert set(sink_config["topics"].split(",")) == expected, directory
            assert sink_config["primary.key.mode"] == "record_key"
            assert sink_config["delete.enabled"] == "true"
            assert sink_config["insert.mode"] == "upsert"


def _one_sink(docs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The directory's one sink for every tenant database (sinks: one-per-service)."""
    sinks = [d for n, d in docs.items() if n.startswith("sink-")]
    assert len(sinks) == 1, sorted(docs)
    assert "topics.regex" in sinks[0]["spec"]["config"]
    return sinks[0]


def test_kustomization_lists_every_manifest(generated: Path) -> None:
    kustomizations = sorted(generated.rglob("kustomization.yaml"))
    assert kustomizations
    for kustomization in kustomizations:
        listed = yaml.safe_load(kustomization.read_text())["resources"]
        present = sorted(p.name for p in kustomization.parent.glob("*.yaml")
                         if p.name != "kustomization.yaml")
        assert listed == present


def test_no_secret_or_unresolved_placeholder_in_output(generated: Path) -> None:
    for path in generated.rglob("*.yaml"):
        for ref in re.findall(r"\$\{[^}]*\}", path.read_text()):
            assert ALLOWED_REFS.fullmatch(ref), f"{path}: {ref}"
    connectors = _connectors(generated)
    assert connectors
    for path, doc in connectors:  # every source and every sink has its password
        config = doc["spec"]["config"]
        key = "database.password" if "database.hostname" in config else "connection.password"
        assert ALLOWED_REFS.fullmatch(config[key]), f"{path}: {key}"
        assert not config[key].startswith("${source."), f"{path}: {key}"


def test_every_file_starts_with_a_generated_header(generated: Path) -> None:
    files = [path for path in generated.rglob("*") if path.is_file()]
    assert files
    for path in files:
        comment = "--" if path.suffix == ".sql" else "#"
        assert path.read_text().startswith(f"{comment} Generated by cdc-generator"), path

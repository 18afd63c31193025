"""deploy/ and generated/, checked against the models of the projects that own their kinds.

tests/k8s-models/validate.mjs validates every manifest with the model class of its
apiVersion and kind from the @kubernetes-models packages (Argo CD, Flux,
prometheus-operator and Strimzi, generated from their CRDs and API types; core
Kubernetes for the ConfigMap), at the exact versions tests/k8s-models/package-lock.json
pins: the model's JSON schema for types, enums and required fields, and the model's
TypeScript interface (type-checked by the pinned TypeScript) for misspelt keys, which
CRD schemas let through. The packages are installed here with `npm ci` when
node_modules is missing or differs from the lock file; without node and npm the
tests fail, they never skip.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

MODELS = REPO / "tests" / "k8s-models"
SCRIPT = MODELS / "validate.mjs"
# every kind deploy/ and generated/ hold, and the model each must be validated by
MODELLED = {"argoproj.io/v1alpha1/ApplicationSet", "source.toolkit.fluxcd.io/v1/GitRepository",
            "kustomize.toolkit.fluxcd.io/v1/Kustomization", "monitoring.coreos.com/v1/PodMonitor",
            "monitoring.coreos.com/v1/PrometheusRule", "kafka.strimzi.io/v1/KafkaConnect",
            "kafka.strimzi.io/v1/KafkaConnector", "v1/ConfigMap",
            "rbac.authorization.k8s.io/v1/Role", "rbac.authorization.k8s.io/v1/RoleBinding"}


def _installed() -> bool:
    hidden = MODELS / "node_modules" / ".package-lock.json"
    if not hidden.is_file():
        return False
    locked: dict[str, object] = json.loads((MODELS / "package-lock.json").read_text())["packages"]
    present: dict[str, object] = json.loads(hidden.read_text())["packages"]
    return {k: v for k, v in locked.items() if k} == present


@pytest.fixture(scope="session")
def node() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm (Node.js 20 or later) are needed to validate deploy/ "
                    "against the @kubernetes-models packages")
    if not _installed():
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                              cwd=MODELS, capture_output=True, text=True, check=False,
                              timeout=600)
        assert done.returncode == 0, f"npm ci in {MODELS} failed:\n{done.stdout}{done.stderr}"
        assert _installed(), "npm ci left node_modules different from package-lock.json"
    return node


def validate(node: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([node, str(SCRIPT), *map(str, files)], cwd=REPO, capture_output=True,
                          text=True, check=False, timeout=120)


def manifests() -> list[Path]:
    found = sorted([*(REPO / "deploy").rglob("*.yaml"),
                    *(REPO / "generated" / "pipelines").rglob("*.yaml")])
    assert found
    return found


def test_every_manifest_is_valid_for_its_model(node: str) -> None:
    done = validate(node, *manifests())
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    validated = {line.split()[2] for line in lines if line.startswith("ok ")}
    assert validated == MODELLED
    # only kustomize's own build files have no model; every other document was validated
    skipped = [line for line in lines if line.startswith("skip ")]
    assert all(" kustomize.config.k8s.io/v1beta1/Kustomization " in line
               or " kustomize.config.k8s.io/v1alpha1/Component " in line for line in skipped)
    documents = sum(1 for p in manifests() for d in p.read_text().split("\n---\n") if d.strip())
    assert len(lines) == documents


BROKEN = [
    # (file, text in it, replacement, JSON path the error names, message)
    ("deploy/argocd/pipelines.yaml", "goTemplate: true", 'goTemplate: "true"',
     "$.spec.goTemplate", "must be boolean"),
    ("deploy/flux/prod.yaml", "  prune: true", '  prune: "yes"', "$.spec.prune",
     "must be boolean"),
    ("deploy/flux/prod.yaml", "  interval: 1m", "  interval: [1m]", "$.spec.interval",
     "must be string"),
    ("deploy/monitoring/base/prometheus-rule.yaml", "for: 5m", "for: 5 minutes",
     "$.spec.groups[0].rules[0].for", "must match pattern"),
    ("deploy/monitoring/base/pod-monitor.yaml", "path: /metrics", "path: [/metrics]",
     "$.spec.podMetricsEndpoints[0].path", "must be string"),
    ("deploy/connect/base/kafka-connect.yaml", "replicas: 1", "replicas: one", "$.spec.replicas",
     "must be integer"),
    ("deploy/connect/base/kafka-connect.yaml", "type: jmxPrometheusExporter",
     "type: prometheus", "$.spec.metricsConfig.type", "must be equal to one of the allowed"),
    ("generated/pipelines/directory/prod/source-directory.yaml", "tasksMax: 1",
     'tasksMax: "1"', "$.spec.tasksMax", "must be integer"),
    ("deploy/connect/base/metrics-config.yaml", "metadata:\n  name: cdc-connect-metrics",
     "metadata:\n  name: [cdc-connect-metrics]", "$.metadata.name", "must be string"),
    # misspelt keys: the CRD schemas let them through (the API server would drop them)
    ("deploy/argocd/connect.yaml", "selfHeal: true", "selfheal: true",
     "$.spec.template.spec.syncPolicy.automated.selfheal", "unknown field"),
    ("deploy/flux/prod.yaml", "  wait: true", "  wiat: true", "$.spec.wiat", "unknown field"),
    ("deploy/monitoring/base/pod-monitor.yaml", "podMetricsEndpoints:", "podMetricsEndpoint:",
     "$.spec.podMetricsEndpoint", "unknown field"),
    ("deploy/monitoring/base/prometheus-rule.yaml", "for: 5m", "fro: 5m",
     "$.spec.groups[0].rules[0].fro", "unknown field"),
    ("deploy/connect/base/kafka-connect.yaml", "metricsConfig:", "metricConfig:",
     "$.spec.metricConfig", "unknown field"),
    ("generated/pipelines/directory/prod/source-directory.yaml", "tasksMax: 1", "taskMax: 1",
     "$.spec.taskMax", "unknown field"),
    ("deploy/connect/base/metrics-config.yaml", "\ndata:", "\ndate:", "$.date", "unknown field"),
]


@pytest.fixture(scope="module")
def broken_runs(node: str, tmp_path_factory: pytest.TempPathFactory) -> dict[Path, list[str]]:
    """Each case's broken copy -> the error lines of one validate.mjs run over all copies."""
    folder = tmp_path_factory.mktemp("broken")
    copies = []
    for i, (rel, good, bad, _path, _says) in enumerate(BROKEN):
        text = (REPO / rel).read_text()
        assert good in text, f"{rel} no longer holds {good!r}: update the case"
        copy = folder / f"{i}-{Path(rel).name}"
        copy.write_text(text.replace(good, bad, 1))
        copies.append(copy)
    done = validate(node, *copies)
    assert done.returncode == 1, done.stdout + done.stderr
    errors: dict[Path, list[str]] = {c: [] for c in copies}
    for line in done.stdout.splitlines():
        if not line.startswith(("ok ", "skip ")):
            errors[Path(line.split(":", 1)[0])].append(line)
    return errors


@pytest.mark.parametrize("case", range(len(BROKEN)),
                         ids=[f"{b[0].rsplit('/', 1)[-1]}:{b[3]}" for b in BROKEN])
def test_a_broken_copy_fails_with_file_line_and_path(broken_runs: dict[Path, list[str]],
                                                     case: int) -> None:
    rel, good, bad, path, says = BROKEN[case]
    [copy] = [c for c in broken_runs if c.name == f"{case}-{Path(rel).name}"]
    [error] = broken_runs[copy]  # that document fails, and only for what was broken
    text = (REPO / rel).read_text()
    first = text[: text.index(good)].count("\n") + 1
    location, _, _rest = error.partition(": ")
    file, line, _col = location.rsplit(":", 2)
    assert file == str(copy)
    assert first <= int(line) <= first + bad.count("\n"), error
    assert f": {path}: {says}" in error


def test_an_unknown_api_version_fails(node: str, tmp_path: Path) -> None:
    manifest = tmp_path / "appset.yaml"
    # Argo CD serves ApplicationSet as v1alpha1 only
    manifest.write_text("apiVersion: argoproj.io/v1\nkind: ApplicationSet\nmetadata:\n  name: x\n")
    done = validate(node, manifest)
    assert done.returncode == 1
    assert "no model for argoproj.io/v1 ApplicationSet" in done.stdout


def _apply_patch(doc: dict[str, object], ops: list[dict[str, object]]) -> None:
    """The add and replace operations of a JSON patch (RFC 6902), on `doc` in place."""
    for op in ops:
        assert op["op"] in ("add", "replace"), op
        keys = [k.replace("~1", "/").replace("~0", "~") for k in str(op["path"]).split("/")[1:]]
        parent: dict[str, object] = doc
        for key in keys[:-1]:
            child = parent.setdefault(key, {})
            assert isinstance(child, dict), (op, key)
            parent = child
        if op["op"] == "replace":
            assert keys[-1] in parent, f"replace of a missing {op['path']}"
        parent[keys[-1]] = op["value"]


@pytest.mark.parametrize("component", ["kubernetes", "directory"])
def test_the_secrets_components_patch_a_valid_kafka_connect(node: str, component: str,
                                                            tmp_path: Path) -> None:
    """What kustomize builds from the base with the component: checked by the model."""
    import yaml

    base = yaml.safe_load((REPO / "deploy/connect/base/kafka-connect.yaml").read_text())
    kustomization = yaml.safe_load(
        (REPO / "deploy/connect/secrets" / component / "kustomization.yaml").read_text())
    for patch in kustomization["patches"]:
        assert patch["target"] == {"kind": "KafkaConnect", "name": base["metadata"]["name"]}
        _apply_patch(base, yaml.safe_load(patch["patch"]))
    built = tmp_path / "kafka-connect.yaml"
    built.write_text(yaml.safe_dump(base))
    done = validate(node, built)
    assert done.returncode == 0, done.stdout + done.stderr
    config = base["spec"]["config"]
    providers = config["config.providers"].split(",")
    assert all(f"config.providers.{p}.class" in config for p in providers)
    if component == "kubernetes":
        assert config["config.providers.secrets.class"] == \
            "io.strimzi.kafka.KubernetesSecretConfigProvider"
    else:
        mounts = base["spec"]["template"]["connectContainer"]["volumeMounts"]
        assert mounts[0]["mountPath"] == "/mnt/cdc-credentials"

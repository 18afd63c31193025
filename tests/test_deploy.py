"""deploy/: the Argo CD, Flux and Kafka Connect examples agree with the config and generated/.

Nothing here talks to a cluster. The manifests are read as data and every path,
name and environment they mention is checked against this repository: folders
exist (and hold a kustomization.yaml), names are valid DNS-1123 labels, each
environment in server-groups.yaml is deployed to its namespace, and the Kafka
Connect worker provides every `${env:NAME}` the generated connectors use.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

DEPLOY = REPO / "deploy"
PIPELINES = REPO / "generated" / "pipelines"
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
ENV_REF = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")

Doc = dict[str, Any]


def docs(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def one(path: Path, kind: str) -> Doc:
    [found] = [d for d in docs(path) if d["kind"] == kind]
    return found


def environments() -> dict[str, str]:
    """environment name -> namespace, from server-groups.yaml."""
    groups = yaml.safe_load((REPO / "server-groups.yaml").read_text())
    return {name: env["namespace"] for name, env in groups["environments"].items()}


def connect_clusters() -> set[str]:
    groups = yaml.safe_load((REPO / "server-groups.yaml").read_text())
    return {env["connect_cluster"] for env in groups["environments"].values()}


def pipeline_dirs(env: str | None = None) -> set[str]:
    """generated/pipelines/<service>/<env> folders, relative to the repository."""
    found = {p.relative_to(REPO).as_posix() for p in PIPELINES.glob(f"*/{env or '*'}")
             if p.is_dir()}
    assert found, f"no generated folders for {env or 'any environment'}"
    return found


def assert_kustomize_dir(rel: str) -> None:
    folder = REPO / rel
    assert folder.is_dir(), f"{rel} does not exist"
    assert (folder / "kustomization.yaml").is_file(), f"{rel} has no kustomization.yaml"


# --- Argo CD go templates --------------------------------------------------------------------

_EXPR = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_INDEX = re.compile(r"^index\s+(\.[\w.]+)\s+(\d+)$")


def _lookup(params: Doc, dotted: str) -> Any:
    value: Any = params
    for key in dotted.lstrip(".").split("."):
        value = value[key]  # KeyError = missingkey=error
    return value


def render(template: str, params: Doc) -> str:
    """The subset of Argo CD's go templates the examples use: `.a.b` and `index .a N`."""
    def one_expr(match: re.Match[str]) -> str:
        expr = match.group(1)
        index = _INDEX.match(expr)
        if index:
            return str(_lookup(params, index.group(1))[int(index.group(2))])
        assert re.fullmatch(r"\.[\w.]+", expr), f"unsupported template expression {expr!r}"
        return str(_lookup(params, expr))

    return _EXPR.sub(one_expr, template)


def git_directory_params(rel: str) -> Doc:
    """What Argo CD's git directory generator yields for one folder."""
    segments = rel.split("/")
    return {"path": {"path": rel, "basename": segments[-1], "segments": segments,
                     "basenameNormalized": segments[-1]}}


def list_elements(generator: Doc) -> list[Doc]:
    elements: list[Doc] = generator["list"]["elements"]
    return elements


def assert_mirrors_environments(elements: list[Doc]) -> None:
    assert {e["environment"]: e["namespace"] for e in elements} == environments()


def expand_pipelines(appset: Doc) -> list[tuple[Doc, str]]:
    """(Application, folder) for every element x matching folder of the matrix."""
    [matrix] = appset["spec"]["generators"]
    first, second = matrix["matrix"]["generators"]
    out = []
    for element in list_elements(first):
        git = second["git"]
        [directory] = git["directories"]
        pattern = render(directory["path"], element)
        folders = sorted(p.relative_to(REPO).as_posix() for p in REPO.glob(pattern) if p.is_dir())
        assert folders, f"{pattern} matches no folder"
        for folder in folders:
            params = element | git_directory_params(folder)
            out.append((render_application(appset["spec"]["template"], params), folder))
    return out


def render_application(template: Any, params: Doc) -> Any:
    if isinstance(template, str):
        return render(template, params)
    if isinstance(template, dict):
        return {k: render_application(v, params) for k, v in template.items()}
    if isinstance(template, list):
        return [render_application(v, params) for v in template]
    return template


def application_sets() -> dict[str, Doc]:
    """file name -> ApplicationSet, for every file deploy/argocd/kustomization.yaml lists."""
    kustomization = docs(DEPLOY / "argocd" / "kustomization.yaml")[0]
    assert kustomization["resources"]
    return {name: one(DEPLOY / "argocd" / name, "ApplicationSet")
            for name in kustomization["resources"]}


def per_environment_applications() -> list[tuple[str, Doc]]:
    """(environment, Application) for every ApplicationSet with one list generator."""
    out = []
    for appset in application_sets().values():
        [generator] = appset["spec"]["generators"]
        if "list" not in generator:
            continue
        elements = list_elements(generator)
        assert_mirrors_environments(elements)
        out += [(e["environment"], render_application(appset["spec"]["template"], e))
                for e in elements]
    return out


def test_argocd_kustomization_lists_the_application_sets() -> None:
    listed = set(application_sets())
    assert listed == {p.name for p in (DEPLOY / "argocd").glob("*.yaml")
                      if p.name != "kustomization.yaml"}


def test_argocd_pipelines_cover_every_generated_folder() -> None:
    appset = application_sets()["pipelines.yaml"]
    assert appset["spec"]["goTemplate"] is True
    [matrix] = appset["spec"]["generators"]
    assert_mirrors_environments(list_elements(matrix["matrix"]["generators"][0]))

    apps = expand_pipelines(appset)
    assert {folder for _app, folder in apps} == pipeline_dirs()
    names = [app["metadata"]["name"] for app, _folder in apps]
    assert len(names) == len(set(names)), "one Application per service and environment"
    for app, folder in apps:
        _generated, _pipelines, service, env = folder.split("/")
        assert app["metadata"]["name"] == f"cdc-{service}-{env}"
        assert DNS_LABEL.match(app["metadata"]["name"]), app["metadata"]["name"]
        for value in app["metadata"]["labels"].values():
            assert DNS_LABEL.match(value), value
        assert app["spec"]["source"]["path"] == folder
        assert_kustomize_dir(app["spec"]["source"]["path"])
        assert app["spec"]["destination"]["namespace"] == environments()[env]


def test_argocd_pipelines_match_manifest_namespaces() -> None:
    appset = one(DEPLOY / "argocd" / "pipelines.yaml", "ApplicationSet")
    checked = 0
    for app, folder in expand_pipelines(appset):
        for manifest in sorted((REPO / folder).glob("*.yaml")):
            doc = docs(manifest)[0]
            if doc["kind"] == "KafkaConnector":
                assert doc["metadata"]["namespace"] == app["spec"]["destination"]["namespace"]
                checked += 1
    assert checked, "no KafkaConnector under the folders the ApplicationSet deploys"


def test_argocd_connect_and_monitoring_per_environment() -> None:
    apps = per_environment_applications()
    paths = {app["spec"]["source"]["path"].rsplit("/", 1)[0] for _env, app in apps}
    assert paths == {"deploy/connect", "deploy/monitoring"}
    for env, app in apps:
        assert DNS_LABEL.match(app["metadata"]["name"])
        assert app["spec"]["source"]["path"].endswith(f"/{env}")
        assert_kustomize_dir(app["spec"]["source"]["path"])
        overlay = docs(REPO / app["spec"]["source"]["path"] / "kustomization.yaml")[0]
        assert overlay["namespace"] == app["spec"]["destination"]["namespace"]


def test_argocd_application_names_are_unique() -> None:
    """A service named like connect or monitoring would take over their Applications."""
    names = [app["metadata"]["name"] for _env, app in per_environment_applications()]
    names += [app["metadata"]["name"]
              for app, _folder in expand_pipelines(application_sets()["pipelines.yaml"])]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)


def test_application_sets_agree_on_the_repository() -> None:
    sources = set()
    for appset in application_sets().values():
        source = appset["spec"]["template"]["spec"]["source"]
        sources.add((source["repoURL"], source["targetRevision"]))
    git = application_sets()["pipelines.yaml"]
    git_gen = git["spec"]["generators"][0]["matrix"]["generators"][1]["git"]
    sources.add((git_gen["repoURL"], git_gen["revision"]))
    assert len(sources) == 1, sources


# --- Flux ----------------------------------------------------------------------------------

@pytest.mark.parametrize("env", sorted(environments()))
def test_flux_environment(env: str) -> None:
    objects = docs(DEPLOY / "flux" / f"{env}.yaml")
    sources = {d["metadata"]["name"] for d in objects if d["kind"] == "GitRepository"}
    kustomizations = [d for d in objects if d["kind"] == "Kustomization"]
    names = {k["metadata"]["name"] for k in kustomizations}
    assert len(names) == len(kustomizations)

    paths = set()
    for k in kustomizations:
        assert DNS_LABEL.match(k["metadata"]["name"]), k["metadata"]["name"]
        assert k["spec"]["sourceRef"]["kind"] == "GitRepository"
        assert k["spec"]["sourceRef"]["name"] in sources
        for dependency in k["spec"].get("dependsOn", []):
            assert dependency["name"] in names
        path = k["spec"]["path"].removeprefix("./")
        assert_kustomize_dir(path)
        paths.add(path)

    # every service of this environment, and nothing of another environment
    assert pipeline_dirs(env)
    assert {p for p in paths if p.startswith("generated/")} == pipeline_dirs(env)
    connect = f"deploy/connect/{env}"
    assert connect in paths
    assert docs(REPO / connect / "kustomization.yaml")[0]["namespace"] == environments()[env]
    # pipelines wait for their Connect cluster
    [connect_name] = [k["metadata"]["name"] for k in kustomizations
                      if k["spec"]["path"].removeprefix("./") == connect]
    for k in kustomizations:
        if k["spec"]["path"].removeprefix("./").startswith("generated/"):
            assert {"name": connect_name} in k["spec"]["dependsOn"]


def flux_paths(env: str) -> set[str]:
    return {d["spec"]["path"].removeprefix("./") for d in docs(DEPLOY / "flux" / f"{env}.yaml")
            if d["kind"] == "Kustomization"}


@pytest.mark.parametrize("env", sorted(environments()))
def test_flux_and_argocd_deploy_the_same_folders(env: str) -> None:
    argocd = {app["spec"]["source"]["path"] for e, app in per_environment_applications()
              if e == env}
    argocd |= {folder for _app, folder in expand_pipelines(application_sets()["pipelines.yaml"])
               if folder.endswith(f"/{env}")}
    assert flux_paths(env) == argocd


def test_flux_source_fetches_what_is_deployed(tmp_path: Path) -> None:
    """The GitRepository's `ignore` (gitignore syntax) keeps every file a Kustomization builds."""
    source = one(DEPLOY / "flux" / "prod.yaml", "GitRepository")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text(source["spec"]["ignore"])
    # each deployed folder with its kustomization's resources (../base and its files)
    deployed: set[str] = set()
    for env in environments():
        for path in flux_paths(env):
            folders = [REPO / path]
            while folders:
                folder = folders.pop()
                deployed |= {p.relative_to(REPO).as_posix() for p in folder.glob("*.yaml")}
                for resource in docs(folder / "kustomization.yaml")[0].get("resources", []):
                    if (folder / resource).is_dir():
                        folders.append((folder / resource).resolve())
    assert "deploy/monitoring/base/prometheus-rule.yaml" in deployed
    skipped = ["README.md", "src/cdc_generator/cli/__init__.py", "deploy/flux/prod.yaml",
               "deploy/argocd/connect.yaml"]
    done = subprocess.run(["git", "-C", str(tmp_path), "check-ignore", "--no-index",
                           *sorted(deployed), *skipped], capture_output=True, text=True,
                          check=False)
    assert sorted(done.stdout.split()) == sorted(skipped)


# --- Kafka Connect -------------------------------------------------------------------------

def kafka_connect() -> Doc:
    return one(DEPLOY / "connect" / "base" / "kafka-connect.yaml", "KafkaConnect")


def test_kafka_connect_is_the_cluster_the_connectors_name() -> None:
    connect = kafka_connect()
    assert connect["apiVersion"] == "kafka.strimzi.io/v1"
    assert connect["metadata"]["annotations"]["strimzi.io/use-connector-resources"] == "true"
    assert {connect["metadata"]["name"]} == connect_clusters()
    labels = {docs(p)[0]["metadata"]["labels"]["strimzi.io/cluster"]
              for p in PIPELINES.glob("*/*/*.yaml") if p.name != "kustomization.yaml"}
    assert labels == {connect["metadata"]["name"]}
    # required by the v1 API: group and internal topics named per cluster
    for field in ("groupId", "configStorageTopic", "offsetStorageTopic", "statusStorageTopic"):
        assert connect["spec"][field].startswith(connect["metadata"]["name"])


def test_kafka_connect_has_the_plugins_the_connectors_use() -> None:
    plugins = kafka_connect()["spec"]["build"]["plugins"]
    urls = " ".join(a["url"] for p in plugins for a in p["artifacts"])
    classes = {docs(p)[0]["spec"]["class"]
               for p in PIPELINES.glob("*/*/*.yaml") if p.name != "kustomization.yaml"}
    plugin_of = {
        "io.debezium.connector.postgresql.PostgresConnector": "debezium-connector-postgres",
        "io.debezium.connector.jdbc.JdbcSinkConnector": "debezium-connector-jdbc",
    }
    assert classes == set(plugin_of)
    for cls in classes:
        assert plugin_of[cls] in urls, cls


def test_kafka_connect_provides_every_env_reference() -> None:
    spec = kafka_connect()["spec"]
    # env (this repository's choice) and dir (secrets: {provider: directory}) are
    # Kafka's own; the Kubernetes one comes with deploy/connect/secrets/kubernetes
    assert spec["config"]["config.providers"] == "env,dir"
    assert (spec["config"]["config.providers.env.class"]
            == "org.apache.kafka.common.config.provider.EnvVarConfigProvider")
    assert (spec["config"]["config.providers.dir.class"]
            == "org.apache.kafka.common.config.provider.DirectoryConfigProvider")
    env = spec["template"]["connectContainer"]["env"]
    provided = {e["name"] for e in env}
    for entry in env:  # secrets come from Secrets, never inline
        assert set(entry) == {"name", "valueFrom"}, entry
        assert set(entry["valueFrom"]["secretKeyRef"]) == {"name", "key"}
    used = {m for p in PIPELINES.rglob("*.yaml") for m in ENV_REF.findall(p.read_text())}
    assert used, "the generated connectors reference their secrets as ${env:NAME}"
    assert used <= provided, f"not provided to the Connect worker: {sorted(used - provided)}"

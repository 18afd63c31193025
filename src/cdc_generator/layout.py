"""Where generated files go: the one description of the output tree.

    generated/                        GENERATED_DIR, in the repository root
      pipelines/<service>/<env>/      one folder per service and environment:
        <connector>.yaml              its KafkaConnectors, and
        kustomization.yaml            the list of them (kubectl -k, Argo CD, Flux)
      sql/<service>/<env>/            SQL to run in a database before deploying:
        <name>.sql                    publication[-<customer>].sql, ...

`<service>` is the service's Kubernetes name (names.k8s), `<env>` the
environment's name. Every file of the tree sits exactly three folders deep, so
`place_of` can say whose it is. Paths here are relative to `generated/` and
'/'-separated; `in_repo` makes one relative to the repository root. Planning,
rendering, the publication SQL, the writer (which files a scoped run owns) and
the Kafka Connect client all place and find files through this module.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import NamedTuple

from cdc_generator import names

GENERATED_DIR = "generated"
PIPELINES = "pipelines"  # kind: Kubernetes manifests
SQL = "sql"  # kind: SQL scripts
KUSTOMIZATION = "kustomization.yaml"

_k8s = cache(names.k8s)  # one call per generated file, with the same few names


def folder(kind: str, service: str, environment: str) -> str:
    """The folder of one service and environment's files of `kind`."""
    return f"{kind}/{_k8s(service)}/{environment}"


def pipelines_dir(service: str, environment: str) -> str:
    return folder(PIPELINES, service, environment)


def manifest(service: str, environment: str, name: str) -> str:
    """A KafkaConnector (or other resource) named `name`."""
    return f"{folder(PIPELINES, service, environment)}/{name}.yaml"


def kustomization(service: str, environment: str) -> str:
    return f"{folder(PIPELINES, service, environment)}/{KUSTOMIZATION}"


def sql_file(service: str, environment: str, file_name: str) -> str:
    """A SQL script, e.g. `publication-acme.sql`."""
    return f"{folder(SQL, service, environment)}/{file_name}"


def in_repo(path: str) -> str:
    """`path` (relative to generated/) relative to the repository root."""
    return f"{GENERATED_DIR}/{path}"


def generated_dir(root: Path) -> Path:
    return root / GENERATED_DIR


class Place(NamedTuple):
    """Whose a file of the tree is: `<kind>/<service>/<environment>/<name>`."""

    kind: str
    service: str  # the Kubernetes name, as in the path
    environment: str
    name: str


def place_of(path: str) -> Place | None:
    """The place of `path` (relative to generated/); None off the layout."""
    parts = path.split("/", 3)
    if len(parts) != 4:
        return None
    return Place(*parts)


def owned_by(path: str, service: str | None, environment: str | None) -> bool:
    """Whether `path` belongs to `service` (a config name) and `environment`;
    None matches any."""
    if service is None and environment is None:
        return True
    place = place_of(path)
    if place is None:
        return False
    if service is not None and place.service != _k8s(service):
        return False
    return environment is None or place.environment == environment


def manifests(root: Path, *, service: str | None = None,
              environment: str | None = None) -> list[Path]:
    """The YAML files under generated/pipelines/ of `service` and `environment`
    (None: all), sorted."""
    base = generated_dir(root) / PIPELINES
    pattern = f"{_k8s(service) if service else '*'}/{environment or '*'}/*.yaml"
    return sorted(base.glob(pattern))

"""Find, read and validate a repository's configuration: the one loader."""

from __future__ import annotations

from pathlib import Path

from cdc_generator.config import checks, schema
from cdc_generator.config.load import Document, YamlLoadError, load_document
from cdc_generator.config.model import (
    Config,
    Service,
    build_environments,
    build_server_groups,
    build_service,
)
from cdc_generator.errors import ConfigError, Problem

GROUPS_FILE = "server-groups.yaml"
SERVICES_DIR = "services"
SERVICE_SUFFIXES = (".yaml", ".yml")


def service_files(root: Path) -> list[Path]:
    folder = root / SERVICES_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in SERVICE_SUFFIXES and p.is_file())


def load_config(root: Path) -> Config:
    """Read and validate everything; raise ConfigError listing every problem.

    One run finds the problems of every kind in every file: a file that cannot
    be read or breaks its schema is reported and set aside, and the others are
    still checked, without the problems that would only echo it (a reference to
    a service whose file was set aside is not a second problem)."""
    problems: list[Problem] = []
    groups_doc = _read(root / GROUPS_FILE, GROUPS_FILE, schema.SERVER_GROUPS_SCHEMA, problems)
    services: list[Service] = []
    set_aside: set[str] = set()
    for file in service_files(root):
        doc = _read(file, f"{SERVICES_DIR}/{file.name}", schema.SERVICE_SCHEMA, problems)
        if doc is None:
            set_aside.add(file.stem)
            continue
        service = build_service(doc)
        if service.name != file.stem:
            problems.append(service.at("service").problem(
                f"service {service.name!r} is defined in {file.name}",
                f"name the file {SERVICES_DIR}/{service.name}.yaml or set service: {file.stem}",
            ))
            set_aside |= {service.name, file.stem}  # which name is meant is not known
            continue
        services.append(service)
    groups = build_server_groups(groups_doc) if groups_doc is not None else ()
    config = Config(
        environments=build_environments(groups_doc) if groups_doc is not None else (),
        server_groups=groups,
        services=tuple(sorted(services, key=lambda s: s.name)),
        groups_file=GROUPS_FILE,
        group_by_name={g.name: g for g in groups},
    )
    problems.extend(checks.check_config(config, set_aside=frozenset(set_aside),
                                        groups_known=groups_doc is not None))
    if problems:
        raise ConfigError(problems)
    return config


def _read(file: Path, shown: str, schema_name: str, problems: list[Problem]) -> Document | None:
    try:
        doc = load_document(file, shown)
    except YamlLoadError as exc:
        problems.extend(exc.problems)
        return None
    if not isinstance(doc.data, dict):
        problems.append(doc.problem((), "the file must contain a mapping at the top level"))
        return None
    found = schema.validate(doc, schema_name)
    problems.extend(found)
    return None if found else doc

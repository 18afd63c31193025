"""Find, read and validate a repository's configuration: the one loader.

One run reports every problem it can find in every file. A file that is not
YAML, or fails its schema, does not stop the others: every file is scanned for
literal secrets whatever its state, the entries that passed their schema (a
server group, an environment, a table) go on to the semantic checks and the
collision checks, and what was left out is named (`checks.Unread`) so that no
check reports it missing. No message repeats a secret.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from cdc_generator.config import checks, schema, secrets
from cdc_generator.config.load import (
    Document,
    KeyPath,
    YamlLoadError,
    load_document,
    shown_name,
)
from cdc_generator.config.model import (
    Config,
    Environment,
    ServerGroup,
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
    """Every entry of services/ named like a YAML file, whatever it is: a
    directory or FIFO there is reported by the loader, not skipped."""
    folder = root / SERVICES_DIR
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []
    return sorted(folder / e.name for e in entries if e.name.endswith(SERVICE_SUFFIXES))


@dataclass
class _Loaded:
    problems: list[Problem] = field(default_factory=list)
    found: secrets.Secrets = field(default_factory=secrets.Secrets)


def load_config(root: Path) -> Config:
    """Read and validate everything; raise ConfigError listing every problem."""
    run = _Loaded()
    if (root / SERVICES_DIR).exists() and not (root / SERVICES_DIR).is_dir():
        run.problems.append(Problem(SERVICES_DIR, message="is not a directory",
                                    hint="services/ holds one <service>.yaml per service"))
    groups_doc = _read(root, root / GROUPS_FILE, GROUPS_FILE, run)
    environments, groups, unread = _groups_model(groups_doc, run)
    services: list[Service] = []
    unread_services: set[str] = set()
    for file in service_files(root):
        shown = f"{SERVICES_DIR}/{shown_name(file.name)}"
        doc = _read(root, file, shown, run)
        service = _service_model(doc, run)
        if service is None:
            unread_services.add(file.name.rsplit(".", 1)[0])
            continue
        if service.name != file.stem:
            run.problems.append(service.at("service").problem(
                f"service {service.name!r} is defined in {shown_name(file.name)}",
                f"name the file {SERVICES_DIR}/{service.name}.yaml or set service: "
                f"{shown_name(file.stem)}",
            ))
            # which name is meant is not known: neither is reported missing elsewhere
            unread_services |= {service.name, file.stem}
            continue
        services.append(service)
    config = Config(
        environments=environments,
        server_groups=groups,
        services=tuple(sorted(services, key=lambda s: s.name)),
        groups_file=GROUPS_FILE,
        group_by_name={g.name: g for g in groups},
    )
    unread = checks.Unread(unread.groups, unread.services | frozenset(unread_services),
                           unread.environments, unread.groups_file)
    run.problems.extend(checks.check_config(config, root, unread))
    run.problems.extend(run.found.problems)
    if run.problems:
        from cdc_generator import plan  # the collisions too: every problem in one run

        run.problems.extend(plan.check(config))
        raise ConfigError(run.found.redact(run.problems))
    return config


def _read(root: Path, file: Path, shown: str, run: _Loaded) -> Document | None:
    """The document of `file` when it is YAML with a mapping at the top; its
    secrets are scanned even when it is not usable."""
    try:
        doc = load_document(file, shown, within=root)
    except YamlLoadError as exc:
        run.problems.extend(exc.problems)
        if exc.doc is not None:
            secrets.scan(exc.doc, run.found)
        elif exc.text is not None:
            secrets.scan_text(exc.text, shown, run.found)
        return None
    secrets.scan(doc, run.found)
    if not isinstance(doc.data, dict):
        run.problems.append(doc.problem((), "the file must contain a mapping at the top level"))
        return None
    return doc


def _invalid(doc: Document, schema_name: str, run: _Loaded) -> list[KeyPath]:
    """The key paths where `doc` fails its schema (each problem recorded)."""
    found = schema.errors(doc, schema_name, run.found.paths.get(doc.path, ()))
    run.problems.extend(problem for _path, _validator, problem in found if problem is not None)
    # an unknown key is ignored by the model: it spoils nothing else
    return [path for path, validator, _problem in found if validator != "additionalProperties"]


def _groups_model(doc: Document | None, run: _Loaded) -> tuple[
        tuple[Environment, ...], tuple[ServerGroup, ...], checks.Unread]:
    """The environments and server groups that passed the schema, and the rest."""
    if doc is None:
        return (), (), checks.Unread(environments=None, groups_file=True)
    bad = _invalid(doc, schema.SERVER_GROUPS_SCHEMA, run)
    sections = {path[0] if path else "" for path in bad if len(path) < 2}
    raw_groups = doc.data.get("server_groups")
    if sections & {"", "server_groups"}:  # no usable list of groups
        groups: tuple[ServerGroup, ...] = ()
        skipped = raw_groups if isinstance(raw_groups, list) else []
        groups_file = True
    else:
        bad_groups = frozenset(p[1] for p in bad if len(p) > 1 and p[0] == "server_groups"
                               and isinstance(p[1], int))
        groups = build_server_groups(doc, bad_groups)
        skipped = [raw_groups[i] for i in sorted(bad_groups)]
        groups_file = False
    environments: tuple[Environment, ...] = ()
    bad_envs: frozenset[str] | None = None
    if "environments" not in sections:
        bad_envs = frozenset(str(p[1]) for p in bad if len(p) > 1 and p[0] == "environments")
        environments = build_environments(doc, bad_envs)
    return environments, groups, checks.Unread(
        groups=_names(skipped), services=_group_services(skipped),
        environments=bad_envs, groups_file=groups_file)


def _service_model(doc: Document | None, run: _Loaded) -> Service | None:
    if doc is None:
        return None
    bad = _invalid(doc, schema.SERVICE_SCHEMA, run)
    if any(len(path) < 3 or path[:2] != ("source", "tables") for path in bad):
        return None
    return build_service(doc, frozenset(p[2] for p in bad if isinstance(p[2], int)))


def _names(raw: object) -> frozenset[str]:
    """The `name`s of raw server group entries, where they are strings."""
    items = raw if isinstance(raw, list) else []
    return frozenset(g["name"] for g in items if isinstance(g, dict)
                     and isinstance(g.get("name"), str))


def _group_services(raw: object) -> frozenset[str]:
    """Every service a raw server group entry may name (on it or its databases)."""
    out: set[str] = set()
    for group in raw if isinstance(raw, list) else []:
        if not isinstance(group, dict):
            continue
        out.add(str(group.get("service")))
        dbs = group.get("databases")
        for db in dbs if isinstance(dbs, list) else []:
            if isinstance(db, dict):
                out.add(str(db.get("service")))
    return frozenset(out)

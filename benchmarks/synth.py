"""A synthetic multi-tenant estate, written as real config files into a repository root.

`Estate(tenants=500)` is N db-per-tenant tenant databases of one service with T
tables, generated for E environments, plus a few db-shared services (schema
isolation, so tables without a schema are captured from every tenant schema).
Only documented keys are used (see schemas/), and the result passes
`cdc-generator validate`. Benchmarks and tests both build from here, and tests
mutate an estate by writing a changed `Estate` over the same root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ENVIRONMENT_NAMES = ("dev", "staging", "prod")
TENANT_GROUP = "tenants"
SHARED_GROUP = "shared"


def environment_names(count: int) -> tuple[str, ...]:
    """`count` environment names: dev, staging, prod, then env4, env5, ..."""
    return (*ENVIRONMENT_NAMES[:count], *(f"env{i + 1}" for i in range(3, count)))


@dataclass(frozen=True)
class Estate:
    tenants: int = 50
    tables: int = 20
    environments: tuple[str, ...] = ENVIRONMENT_NAMES
    tenant_service: str = "billing"
    shared_services: tuple[str, ...] = ("directory", "catalog", "audit")
    shared_tables: int = 5
    removed_tenants: frozenset[int] = frozenset()  # tenant numbers left out
    prod_tasks_max: int = 2  # sink_tasks_max of the last environment
    namespace_prefix: str = "kafka"

    def tenant_numbers(self) -> list[int]:
        return [i for i in range(self.tenants) if i not in self.removed_tenants]


def customer(number: int) -> str:
    return f"tenant_{number:05d}"


def server_groups_yaml(estate: Estate) -> str:
    out = [
        "# Synthetic estate written by benchmarks/synth.py",
        "environments:",
    ]
    last = len(estate.environments) - 1
    for i, env in enumerate(estate.environments):
        out += [f"  {env}:",
                f"    namespace: {estate.namespace_prefix}-{env}",
                "    connect_cluster: cdc-connect"]
        if i == last:
            out += [f"    sink_tasks_max: {estate.prod_tasks_max}",
                    "    sink:",
                    "      host: ${POSTGRES_SINK_PROD_HOST}",
                    "      password: ${POSTGRES_SINK_PROD_PASSWORD}"]
    out.append("server_groups:")
    if estate.shared_services:
        out += [
            f"  - name: {SHARED_GROUP}",
            "    server_group_type: db-shared",
            "    isolation: schema",
            "    server:",
            "      type: postgres",
            "      host: ${POSTGRES_SHARED_HOST}",
            "    databases:",
        ]
        for svc in estate.shared_services:
            out += [f"      - name: {svc}_db",
                    f"        service: {svc}",
                    "        schemas: [public, customer_a, customer_b]"]
            if len(estate.environments) > 1:
                out += ["        name_by_environment:",
                        f"          {estate.environments[last]}: {svc}_db_prod"]
    numbers = estate.tenant_numbers()
    if numbers:
        out += [
            f"  - name: {TENANT_GROUP}",
            "    server_group_type: db-per-tenant",
            f"    service: {estate.tenant_service}",
            "    server:",
            "      type: postgres",
            "      host: ${POSTGRES_TENANTS_HOST}",
            "      port: ${POSTGRES_TENANTS_PORT}",
            "      user: ${POSTGRES_TENANTS_USER}",
            "      password: ${POSTGRES_TENANTS_PASSWORD}",
            "    databases:",
        ]
        for n in numbers:
            out += [f"      - name: {estate.tenant_service}_{n:05d}",
                    f"        customer: {customer(n)}"]
            if n % 10 == 9 and len(estate.environments) > 1:
                # some tenants were migrated under another database name in prod
                out += ["        name_by_environment:",
                        f"          {estate.environments[last]}: "
                        f"{estate.tenant_service}_{n:05d}_prod"]
    return "\n".join(out) + "\n"


def _tables(count: int, *, schema: str | None, with_filter: bool) -> Iterator[str]:
    for t in range(count):
        yield f"    - name: table_{t:03d}"
        if schema is not None:
            yield f"      schema: {schema}"
        if t % 5 == 1:
            yield "      primary_key: [parent_id, line_no]"
        else:
            yield "      primary_key: id"
        if with_filter and t == 2:
            yield "      filter: \"owner_id = '{{CUSTOMER_ID}}'\""
        elif t == 3:
            yield "      filter: \"deleted_at IS NULL\""


def service_yaml(name: str, group: str, tables: int, *, tenant: bool) -> str:
    lines = [
        "# yaml-language-server: $schema=../schemas/service.schema.json",
        f"service: {name}",
        f"server_group: {group}",
        "source:",
        "  type: postgres",
        "  tables:",
        # tenant tables name their schema; shared tables without one are
        # captured from every tenant schema
        *_tables(tables, schema="public" if tenant else None, with_filter=tenant),
    ]
    if not tenant:
        lines += ["    - name: countries", "      schema: public", "      primary_key: code"]
    return "\n".join(lines) + "\n"


def files(estate: Estate) -> dict[str, str]:
    """Every config file of `estate`, relative path -> text."""
    out = {"server-groups.yaml": server_groups_yaml(estate)}
    if estate.tenant_numbers():
        out[f"services/{estate.tenant_service}.yaml"] = service_yaml(
            estate.tenant_service, TENANT_GROUP, estate.tables, tenant=True)
    for svc in estate.shared_services:
        out[f"services/{svc}.yaml"] = service_yaml(
            svc, SHARED_GROUP, estate.shared_tables, tenant=False)
    return out


def write(root: Path, estate: Estate) -> None:
    """Make `root` hold exactly `estate`'s config (other service files are removed)."""
    wanted = files(estate)
    services = root / "services"
    services.mkdir(parents=True, exist_ok=True)
    for stale in services.iterdir():
        if f"services/{stale.name}" not in wanted:
            stale.unlink()
    for rel, text in wanted.items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue  # keep mtimes of unchanged inputs, like an editor would
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)


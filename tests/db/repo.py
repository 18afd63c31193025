"""Throwaway repositories whose server block points at the test PostgreSQL server."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cdc_generator import localpg

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_repo(root: Path, groups: str, services: dict[str, str]) -> Path:
    (root / "services").mkdir(parents=True, exist_ok=True)
    (root / "server-groups.yaml").write_text(textwrap.dedent(groups), encoding="utf-8")
    for name, text in services.items():
        (root / "services" / f"{name}.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def point_env_at(monkeypatch: pytest.MonkeyPatch, server: localpg.LocalPostgres,
                 prefix: str = "POSTGRES_SHOP", user: str | None = None,
                 password: str | None = None) -> None:
    monkeypatch.setenv(f"{prefix}_HOST", server.host)
    monkeypatch.setenv(f"{prefix}_PORT", str(server.port))
    monkeypatch.setenv(f"{prefix}_USER", user or server.user)
    monkeypatch.setenv(f"{prefix}_PASSWORD", password or server.password)


def shop_groups(database: str) -> str:
    """A db-shared group 'shop' whose only database is `database`."""
    return f"""\
        environments:
          dev:
            namespace: kafka-dev
        server_groups:
          - name: shop
            server_group_type: db-shared
            service: orders
            server:
              type: postgres
              host: ${{POSTGRES_SHOP_HOST}}
            databases:
              - name: {database}
                service: orders
        """


ORDERS_SERVICE = """\
    # the orders service
    service: orders
    server_group: shop

    source:
      type: postgres
      tables:
        - schema: public
          name: orders  # the main table
          primary_key: id
        # order lines, keyed by order and line number
        - schema: public
          name: order_lines
          primary_key: [order_id, line_no]
    """

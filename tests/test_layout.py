"""The output layout: one module places every generated file, and the modules that
find files again (the writer's scopes, the Kafka Connect client) find those."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc_generator import connect, generate, layout
from cdc_generator.render import Renderer
from tests.helpers import copy_repo_config


def test_paths() -> None:
    assert layout.manifest("Billing_Svc", "prod", "source-billing-svc") == (
        "pipelines/billing-svc/prod/source-billing-svc.yaml")
    assert layout.kustomization("directory", "nonprod") == (
        "pipelines/directory/nonprod/kustomization.yaml")
    assert layout.sql_file("accounting", "prod", "publication-acme.sql") == (
        "sql/accounting/prod/publication-acme.sql")
    assert layout.in_repo("sql/a/b/c.sql") == "generated/sql/a/b/c.sql"
    assert layout.generated_dir(Path("/r")) == Path("/r/generated")


def test_place_of() -> None:
    assert layout.place_of("sql/accounting/prod/publication-acme.sql") == layout.Place(
        "sql", "accounting", "prod", "publication-acme.sql")
    assert layout.place_of("pipelines/directory/prod/extra/x.yaml") == layout.Place(
        "pipelines", "directory", "prod", "extra/x.yaml")
    assert layout.place_of("pipelines/directory/x.yaml") is None
    assert layout.place_of("README.md") is None


@pytest.mark.parametrize(("path", "service", "environment", "owned"), [
    ("pipelines/billing-svc/prod/a.yaml", "Billing_Svc", None, True),  # by Kubernetes name
    ("pipelines/billing-svc/prod/a.yaml", "billing", None, False),
    ("sql/billing-svc/prod/p.sql", None, "prod", True),
    ("sql/billing-svc/prod/p.sql", None, "nonprod", False),
    ("sql/billing-svc/prod/p.sql", "Billing_Svc", "prod", True),
    ("stray.yaml", "billing", None, False),  # off the layout: no scoped run owns it
    ("stray.yaml", None, None, True),  # an unscoped run owns everything
])
def test_owned_by(path: str, service: str | None, environment: str | None,
                  owned: bool) -> None:
    assert layout.owned_by(path, service, environment) is owned


def test_every_rendered_file_is_on_the_layout(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    plan = generate.load_plan(root, generate.Selection())
    assert plan.pipelines
    files = [f.path for f in Renderer(root).render(plan)]
    places = [layout.place_of(path) for path in files]
    assert None not in places
    kinds = {p.kind for p in places if p is not None}
    assert kinds == {layout.PIPELINES, layout.SQL}
    for p in plan.pipelines:
        assert layout.manifest(p.service, p.environment, p.source.name) in files
        assert layout.kustomization(p.service, p.environment) in files


def test_the_connect_client_finds_what_generate_wrote(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    generate.generate(root, generate.Selection())
    plan = generate.load_plan(root, generate.Selection())
    found = {c.path for c in connect.load_generated(root)}
    wanted = {layout.in_repo(layout.manifest(p.service, p.environment, spec.name))
              for p in plan.pipelines for spec in (p.source, p.sink)}
    assert found == wanted
    prod_accounting = {c.path for c in connect.load_generated(
        root, service="accounting", environment="prod")}
    assert prod_accounting == {path for path in wanted
                               if path.startswith("generated/pipelines/accounting/prod/")}
    assert prod_accounting

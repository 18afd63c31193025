"""An incremental `generate` must equal a clean one: nothing cached can serve stale output.

A mid-sized synthetic estate (benchmarks/synth.py) is generated, its config is
changed the ways real estates change, and after every incremental run the tree
is compared byte for byte with a clean generate into a fresh root. Unchanged
files keep their inode and mtime; scoped runs touch only their scope.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

import pytest
from benchmarks import synth

from cdc_generator import parallel, rowfilter
from cdc_generator.cli import main
from cdc_generator.rowfilter import CUSTOMER_PLACEHOLDER
from tests.helpers import tree

BASE = synth.Estate(tenants=24, tables=6, shared_services=("directory", "catalog", "audit"))

Identity = dict[str, tuple[int, int]]


def generate(root: Path, *args: str, jobs: int = 3) -> None:
    """Incremental runs shard the work over 3 processes; clean ones use 1, so the
    comparison also holds the sharded writer to the serial one."""
    assert jobs == 1 or parallel.can_fork(), "this process would not fork: nothing sharded"
    assert main(["generate", "--root", str(root), "--jobs", str(jobs), *args]) == 0


def identity(directory: Path) -> Identity:
    """inode and mtime of every file: what a rewrite would change."""
    out = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            st = path.stat()
            out[path.relative_to(directory).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return out


def clean(estate: synth.Estate, tmp_path: Path) -> dict[str, bytes]:
    root = tmp_path / f"clean-{len(list(tmp_path.glob('clean-*')))}"
    synth.write(root, estate)
    generate(root, jobs=1)
    return tree(root / "generated")


def estate_root(tmp_path: Path, estate: synth.Estate = BASE) -> Path:
    root = tmp_path / "repo"
    synth.write(root, estate)
    generate(root)
    return root


MUTATIONS = [
    ("remove tenants", replace(BASE, removed_tenants=frozenset({0, 7, 23}))),
    ("add tables", replace(BASE, tables=9, shared_tables=7)),
    ("change an environment", replace(BASE, prod_tasks_max=5, namespace_prefix="kafka-cdc")),
    ("drop an environment", replace(BASE, environments=("dev", "prod"))),
    ("add an environment", replace(BASE, environments=("dev", "staging", "prod", "perf"))),
    ("rename a service", replace(BASE, tenant_service="invoicing",
                                 shared_services=("directory", "products", "audit"))),
    ("remove a service", replace(BASE, shared_services=("directory",))),
    ("add tenants", replace(BASE, tenants=30)),
]


@pytest.mark.parametrize(("what", "estate"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_incremental_equals_clean(what: str, estate: synth.Estate, tmp_path: Path) -> None:
    root = estate_root(tmp_path)
    synth.write(root, estate)
    generate(root)
    assert tree(root / "generated") == clean(estate, tmp_path), what
    assert not list(root.glob(".generated*")), "no staging tree is left behind"


def test_changes_in_sequence_equal_clean(tmp_path: Path) -> None:
    root = estate_root(tmp_path)
    estate = BASE
    for what, changed in MUTATIONS:
        estate = replace(changed, tenants=max(estate.tenants, changed.tenants))
        synth.write(root, estate)
        generate(root)
        assert tree(root / "generated") == clean(estate, tmp_path), what


def test_unchanged_rerun_writes_nothing(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    root = estate_root(tmp_path)
    generated = root / "generated"
    before, directory_inode = identity(generated), generated.stat().st_ino
    capsys.readouterr()
    generate(root)
    assert "nothing written" in capsys.readouterr().err
    assert identity(generated) == before
    assert generated.stat().st_ino == directory_inode, "the tree was not swapped"
    assert main(["generate", "--root", str(root), "--check"]) == 0


def test_only_changed_files_are_rewritten(tmp_path: Path) -> None:
    root = estate_root(tmp_path)
    generated = root / "generated"
    before = identity(generated)
    old = tree(generated)
    estate = replace(BASE, prod_tasks_max=7)  # prod sinks only
    synth.write(root, estate)
    generate(root)
    new = tree(generated)
    assert new == clean(estate, tmp_path)
    after = identity(generated)
    changed = {p for p in new if new[p] != old.get(p)}
    assert changed, "the mutation changed something"
    assert all("/prod/sink-" in p for p in changed)
    for path, ident in after.items():
        if path in changed:
            assert ident[0] != before[path][0], f"{path} was rewritten in place"
        else:
            assert ident == before[path], f"{path} was rewritten although unchanged"


@pytest.mark.parametrize("scope", [
    ("--service", "billing"),
    ("--environment", "staging"),
    ("--service", "catalog", "--environment", "prod"),
])
def test_scoped_run_touches_only_its_scope(scope: tuple[str, ...], tmp_path: Path) -> None:
    root = estate_root(tmp_path)
    generated = root / "generated"
    before, old = identity(generated), tree(generated)
    estate = replace(BASE, tables=8, shared_tables=6, prod_tasks_max=3)  # changes everything
    synth.write(root, estate)
    generate(root, *scope)
    want = clean(estate, tmp_path)
    args = dict(zip(scope[::2], scope[1::2], strict=True))

    def inside(path: str) -> bool:
        _kind, service, environment, _file = path.split("/")
        return (args.get("--service", service) == service
                and args.get("--environment", environment) == environment)

    got, after = tree(generated), identity(generated)
    assert {p for p in got if inside(p)} == {p for p in want if inside(p)}
    assert any(inside(p) and old.get(p) != want[p] for p in want), "the scope did change"
    for path in got:
        if inside(path):
            assert got[path] == want[path], path
        else:
            assert got[path] == old[path], f"{path} is outside the scope but changed"
            assert after[path] == before[path], f"{path} is outside the scope but rewritten"
    assert set(got) == {p for p in want if inside(p)} | {p for p in old if not inside(p)}
    # a full run afterwards completes the picture
    generate(root)
    assert tree(generated) == want


FILTERS = [
    "owner_id = '{{CUSTOMER_ID}}'",
    "owner_id = '{{CUSTOMER_ID}}' AND deleted_at IS NULL",
    "tenant IN ('{{CUSTOMER_ID}}', 'shared') OR path LIKE '{{CUSTOMER_ID}}/%'",
    "owner_id = 'zq{{CUSTOMER_ID}}' || '-x'",
    "owner_id = '{{CUSTOMER_ID}}'::text",
    "lower(owner_id) = lower('{{CUSTOMER_ID}}')",
    "owner_id = {{CUSTOMER_ID}}",
    "{{CUSTOMER_ID}} = owner_id",
    "owner_id BETWEEN '{{CUSTOMER_ID}}' AND 'zz'",
]
CUSTOMERS = ["acme", "Acme", "t", "z", "zq", "zqjx", "42", "1e5", "user", "select", "a-b",
             "ACME_Corp-1", "NULL", "true", "x" * 40, "tenant_00001"]


def _canonical_or_error(make: Callable[[], str]) -> str:
    try:
        return make()
    except rowfilter.RowFilterError as exc:
        return f"error: {exc}"


@pytest.mark.parametrize("template", FILTERS)
def test_tenant_filter_shortcut_equals_full_canonicalisation(template: str) -> None:
    """plan re-prints a tenant filter once per id length, not once per tenant: the
    result must be what rowfilter.canonical gives for each tenant's own text."""
    filters = rowfilter.TenantFilters()
    for customer in CUSTOMERS:
        text = template.replace(CUSTOMER_PLACEHOLDER, customer)
        full = _canonical_or_error(partial(rowfilter.canonical, text))
        fast = _canonical_or_error(partial(filters.canonical, template, customer))
        assert fast == full, (template, customer)


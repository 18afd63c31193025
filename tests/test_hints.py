"""Every command a hint (or a fix, or a status line) shows works in the situation
it is shown in: each scenario below brings the situation about in a scratch
repository, takes the `cdc-generator ...` commands out of the output, runs them
there, and asserts none fails as a usage error (exit 2) or a crash.

`test_every_command_in_the_code_has_a_scenario` keeps the list complete: it
counts the places in the package whose text shows a command, so a new one fails
until a scenario here covers it.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from cdc_generator import localpg
from tests.db.repo import ORDERS_SERVICE, point_env_at, shop_groups, write_repo
from tests.helpers import copy_repo_config, run_cli

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "cdc_generator"
COMMAND = re.compile(r"`(cdc-generator [^`]+)`")
FIX_COMMAND = re.compile(r"^\s*-- (cdc-generator .+)$", re.MULTILINE)

# module -> how many of its texts show a command, and the scenarios that run them
SITES = {
    "report.py": (3, "test_stale_missing_and_orphaned_output"),
    "cli/generate.py": (3, "test_stale_missing_and_orphaned_output, test_diff, "
                           "test_the_generate_hook_on_a_bad_config"),
    "cli/manage_service.py": (1, "test_refused_add_table and the other edits"),
    "cli/validate.py": (1, "test_validate_connect_url_without_output"),
    "connect.py": (1, "test_validate_connect_url_with_a_broken_manifest"),
    "config/checks.py": (1, "test_service_without_a_file"),
    "manage.py": (2, "test_refused_add_table, test_remove_table_refusals"),
    "db/preflight.py": (2, "test_preflight_fix_for_a_missing_table, "
                           "test_preflight_names_an_orphaned_slot"),
    "db/publication_check.py": (1, "test_preflight_fix_for_a_missing_table"),
    "review.py": (3, "test_added_table_and_removed_tenant"),
    "output.py": (1, "the command of test_stale_missing_and_orphaned_output"),
}


def _shown_commands(tree: ast.AST) -> Iterator[str]:
    """String parts (not docstrings) that write out a cdc-generator command."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
                  and node.body and isinstance(node.body[0], ast.Expr)}
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docstrings
                and re.search(r"cdc-generator (generate|manage-service|validate|diff|plan|apply)",
                              node.value)
                and not node.value.lstrip().startswith(("#", "-- Generated", "-- `"))):
            yield node.value


def test_every_command_in_the_code_has_a_scenario() -> None:
    found = Counter({
        path.relative_to(PACKAGE).as_posix(): len(list(_shown_commands(
            ast.parse(path.read_text()))))
        for path in PACKAGE.rglob("*.py") if "compiled" not in path.parts})
    assert {m: n for m, n in found.items() if n} == {m: n for m, (n, _) in SITES.items()}


def commands_in(text: str) -> list[str]:
    return [*COMMAND.findall(text), *FIX_COMMAND.findall(text)]


def run_shown(root: Path, text: str, env: dict[str, str] | None = None) -> list[str]:
    """Run every command `text` shows, in `root`; fail on a usage error or a crash."""
    commands = commands_in(text)
    assert commands, f"no command shown in:\n{text}"
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "cdc-generator"
        done = run_cli(*argv[1:], cwd=root, env=env)
        assert done.returncode != 2, f"`{command}` is a usage error:\n{done.stderr}"
        assert "Traceback" not in done.stderr, f"`{command}` crashed:\n{done.stderr}"
    return commands


def test_stale_missing_and_orphaned_output(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo")
    generated = root / "generated" / "pipelines" / "directory" / "prod"
    (generated / "source-directory.yaml").write_text("edited\n")
    (generated / "sink-directory.yaml").unlink()
    (generated / "leftover.yaml").write_text("kind: Stray\n")
    done = run_cli("generate", "--check", "--no-diff", cwd=root)
    assert done.returncode == 1
    assert len(commands_in(done.stderr)) == 4  # three hints and the closing line
    run_shown(root, done.stderr)
    assert run_cli("generate", "--check", cwd=root).returncode == 0, "the hint did it"


def test_diff(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo")
    (root / "generated" / "pipelines" / "directory" / "prod" / "sink-directory.yaml").unlink()
    done = run_cli("diff", cwd=root)
    assert done.returncode == 1
    run_shown(root, done.stderr)
    assert run_cli("diff", cwd=root).returncode == 0


def test_the_generate_hook_on_a_bad_config(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo")
    service = root / "services" / "directory.yaml"
    service.write_text(service.read_text().replace("server_group: asma", "server_group: x"))
    done = run_cli("generate", "--pre-commit", cwd=root)
    assert done.returncode == 1
    assert "server group 'x'" not in done.stderr, "the problems are cdc-validate's to list"
    [command] = run_shown(root, done.stderr)
    assert "server group 'x' does not exist" in run_cli(*shlex.split(command)[1:],
                                                        cwd=root).stderr


def test_validate_connect_url_without_output(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=False)
    done = run_cli("validate", "--connect-url", "http://127.0.0.1:9", cwd=root)
    assert done.returncode == 1
    assert "no generated connectors found" in done.stderr
    run_shown(root, done.stderr)
    assert (root / "generated").is_dir()


def test_validate_connect_url_with_a_broken_manifest(tmp_path: Path) -> None:
    root = copy_repo_config(tmp_path / "repo", with_generated=True)
    manifest = root / "generated/pipelines/directory/nonprod/source-directory.yaml"
    manifest.write_text("apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\nspec: {}\n")
    done = run_cli("validate", "--connect-url", "http://127.0.0.1:9", cwd=root)
    assert done.returncode == 1
    assert "not a KafkaConnector as generate writes one" in done.stderr
    run_shown(root, done.stderr)
    assert "metadata:" in manifest.read_text()  # generate wrote it again


# --- against a real database --------------------------------------------------------------

SHOP_TABLES = b"""
CREATE SCHEMA eu;
CREATE TABLE public.orders (id int PRIMARY KEY, region text);
CREATE TABLE eu.orders (id int PRIMARY KEY, region text);
CREATE TABLE public.order_lines (order_id int, line_no int, PRIMARY KEY (order_id, line_no));
CREATE TABLE public.customers (customer_no text PRIMARY KEY, name text);
"""


@pytest.fixture
def shop(pg_server: localpg.LocalPostgres, pg_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> tuple[Path, dict[str, str]]:
    root = write_repo(tmp_path / "shop", shop_groups(pg_db), {"orders": ORDERS_SERVICE})
    point_env_at(monkeypatch, pg_server)
    with pg_server.connect(pg_db) as conn:
        conn.execute(SHOP_TABLES)
    return root, dict(os.environ)


def test_service_without_a_file(shop: tuple[Path, dict[str, str]], pg_db: str) -> None:
    root, env = shop
    groups = root / "server-groups.yaml"
    entry = f"      - name: {pg_db}\n        service: orders\n"
    groups.write_text(groups.read_text().replace(entry, entry + entry.replace("orders", "crm")))
    done = run_cli("validate", cwd=root, env=env)
    assert done.returncode == 1
    [command] = run_shown(root, done.stderr, env)
    listed = run_cli(*shlex.split(command)[1:], cwd=root, env=env)
    assert (listed.returncode, "public.customers" in listed.stdout) == (0, True)
    # ... and as the hint says, the same with --add-table in place of --inspect
    create = shlex.split(command.replace("--inspect", "--add-table customers"))
    assert run_cli(*create[1:], cwd=root, env=env).returncode == 0
    assert run_cli("validate", cwd=root, env=env).returncode == 0


def test_refused_add_table(shop: tuple[Path, dict[str, str]]) -> None:
    root, env = shop
    done = run_cli("manage-service", "--service", "orders", "--add-table", "orders",
                   cwd=root, env=env)
    assert done.returncode == 2
    assert "already tracks table 'public.orders'" in done.stderr
    [command] = run_shown(root, done.stderr, env)
    assert command.endswith("--remove-table orders --schema public")
    added = run_cli("manage-service", "--service", "orders", "--add-table", "orders",
                    cwd=root, env=env)
    assert added.returncode == 0, added.stderr
    run_shown(root, added.stderr, env)  # "run `cdc-generator generate`"


def test_remove_table_refusals(shop: tuple[Path, dict[str, str]]) -> None:
    root, env = shop
    service = root / "services" / "orders.yaml"
    original = service.read_text()
    # an entry without a schema, removed with --schema
    service.write_text(original.replace("    - schema: public\n      name: orders",
                                        "    - name: orders"))
    done = run_cli("manage-service", "--service", "orders", "--remove-table", "orders",
                   "--schema", "public", cwd=root, env=env)
    assert done.returncode == 2
    run_shown(root, done.stderr, env)
    assert "name: orders" not in service.read_text()
    # the same table in two schemas, removed without saying which
    service.write_text(original.replace(
        "    - schema: public\n      name: orders  # the main table\n      primary_key: id\n",
        "    - schema: public\n      name: orders\n      primary_key: id\n"
        "    - schema: eu\n      name: orders\n      primary_key: id\n"))
    done = run_cli("manage-service", "--service", "orders", "--remove-table", "orders",
                   cwd=root, env=env)
    assert done.returncode == 2
    assert len(commands_in(done.stderr)) == 2  # one per schema
    before = service.read_text()
    run_shown(root, done.stderr.replace(" or `", "\n`").split("\n`")[0], env)
    assert service.read_text() != before


@pytest.mark.parametrize("entry", ["with a schema", "without a schema"])
def test_preflight_fix_for_a_missing_table(shop: tuple[Path, dict[str, str]],
                                           entry: str) -> None:
    root, env = shop
    service = root / "services" / "orders.yaml"
    text = service.read_text().rstrip("\n") + "\n"
    missing = ("    - schema: public\n      name: refunds\n      primary_key: id\n"
               if entry == "with a schema" else "    - name: refunds\n      primary_key: id\n")
    service.write_text(text + missing)
    done = run_cli("preflight", "--service", "orders", "--environment", "dev", cwd=root,
                   env=env)
    assert done.returncode == 1
    assert "table public.refunds does not exist" in done.stdout
    run_shown(root, done.stdout, env)
    assert "refunds" not in service.read_text()


def test_preflight_names_an_orphaned_slot(shop: tuple[Path, dict[str, str]],
                                          pg_server: localpg.LocalPostgres,
                                          pg_db: str) -> None:
    root, env = shop
    assert run_cli("apply", "--environment", "dev", cwd=root, env=env).returncode == 0
    with pg_server.connect(pg_db) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot('cdc_gone_dev', 'pgoutput')")
    done = run_cli("preflight", "--service", "orders", "--environment", "dev", cwd=root,
                   env=env)
    assert "WARN orphaned_slot" in done.stdout
    assert "'cdc_gone_dev'" in done.stdout
    [command] = [c for c in commands_in(done.stdout) if c.startswith("cdc-generator apply")]
    assert command == "cdc-generator apply --environment dev --prune"
    run_shown(root, f"-- {command}", env)
    with pg_server.connect(pg_db) as conn:
        left = conn.execute("SELECT count(*) FROM pg_replication_slots "
                            "WHERE slot_name = 'cdc_gone_dev'").fetchone()
    assert left == (0,)


def test_the_source_sql_shows_how_to_plan(shop: tuple[Path, dict[str, str]]) -> None:
    root, env = shop
    assert run_cli("generate", cwd=root, env=env).returncode == 0
    text = (root / "generated/sql/orders/dev/source.sql").read_text()
    shown = run_shown(root, text, env)
    assert "cdc-generator plan --environment dev --service orders" in shown

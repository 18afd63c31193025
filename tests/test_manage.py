"""manage-service against a real server: inspect, add and remove tables, create services."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cdc_generator import localpg, manage
from cdc_generator.cli import main
from tests.db.repo import ORDERS_SERVICE, REPO_ROOT, point_env_at, shop_groups, write_repo

TABLES = b"""
CREATE TABLE public.orders (id int PRIMARY KEY, region text);
CREATE TABLE public.order_lines (order_id int, line_no int, PRIMARY KEY (order_id, line_no));
CREATE TABLE public.customers (customer_no text PRIMARY KEY, name text, region text);
CREATE TABLE public.audit_log (at timestamptz, message text);
CREATE TABLE public.shipments (id int, order_id int, region text,
                               PRIMARY KEY (order_id, id));
"""


@pytest.fixture
def repo(pg_server: localpg.LocalPostgres, pg_db: str, tmp_path: Path,
         monkeypatch: pytest.MonkeyPatch) -> Path:
    root = write_repo(tmp_path, shop_groups(pg_db), {"orders": ORDERS_SERVICE})
    point_env_at(monkeypatch, pg_server)
    with pg_server.connect(pg_db) as conn:
        conn.execute(TABLES)
    return root


def _run(root: Path, *argv: str) -> int:
    return main(["manage-service", "--root", str(root), *argv])


def _service(root: Path) -> str:
    return (root / "services" / "orders.yaml").read_text()


def test_inspect(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(repo, "--service", "orders", "--inspect", "--format", "json") == 0
    payload = json.loads(capsys.readouterr().out)
    tables = {t["name"]: t for t in payload["result"]["tables"]}
    assert sorted(tables) == ["audit_log", "customers", "order_lines", "orders", "shipments"]
    assert tables["order_lines"] == {
        "schema": "public", "name": "order_lines", "primary_key": ["order_id", "line_no"],
        "columns": 2, "replica_identity": "default", "estimated_rows": None, "tracked": True}
    assert not tables["customers"]["tracked"]
    assert _run(repo, "--service", "orders", "--inspect") == 0
    out = capsys.readouterr().out
    assert "5 tables, 2 tracked" in out
    assert any(line.startswith("public.orders ") and line.endswith("yes")
               for line in out.splitlines())
    # never analyzed: '?', and a word on what it means
    assert re.search(r"^public\.orders +id +2 +default +\? +yes$", out, re.MULTILINE), out
    assert "est. rows ?: PostgreSQL has no estimate yet" in out


def test_inspect_an_analyzed_table_and_a_schema_that_is_not_there(
        repo: Path, pg_server: localpg.LocalPostgres, pg_db: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    with pg_server.connect(pg_db) as conn:
        conn.execute("INSERT INTO public.orders SELECT g, 'eu' FROM generate_series(1, 50) g")
        conn.execute("ANALYZE public.orders")
    assert _run(repo, "--service", "orders", "--inspect") == 0
    assert re.search(r"^public\.orders +id +2 +default +50 +yes$", capsys.readouterr().out,
                     re.MULTILINE)
    assert _run(repo, "--service", "orders", "--inspect", "--schema", "pubilc") == 2
    err = capsys.readouterr().err
    assert f"database {pg_db} has no tables in schema 'pubilc'" in err
    assert "hint: did you mean public?" in err


def test_add_table_reads_the_key_and_keeps_comments(repo: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    before = _service(repo)
    assert _run(repo, "--service", "orders", "--add-table", "customers") == 0
    assert _service(repo) == before + (
        "    - schema: public\n      name: customers\n      primary_key: customer_no\n")
    assert _run(repo, "--service", "orders", "--add-table", "shipments",
                "--filter", "region = 'eu'") == 0
    assert _service(repo).endswith(
        "    - schema: public\n      name: shipments\n      primary_key: [order_id, id]\n"
        "      filter: \"region = 'eu'\"\n")
    assert "outside the replica identity" in capsys.readouterr().err
    assert _run(repo, "--service", "orders", "--add-table", "customers") == 2
    assert "already tracks" in capsys.readouterr().err
    # the config is still valid and generates
    assert main(["validate", "--root", str(repo)]) == 0


def test_table_without_primary_key(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _service(repo)
    assert _run(repo, "--service", "orders", "--add-table", "audit_log") == 2
    err = capsys.readouterr().err
    assert "has no primary key" in err
    assert "replica identity is default" in err
    assert "REPLICA IDENTITY FULL" in err
    assert _service(repo) == before
    assert _run(repo, "--service", "orders", "--add-table", "audit_log",
                "--primary-key", "at,message") == 0
    assert "primary_key: [at, message]" in _service(repo)
    assert "REPLICA IDENTITY FULL" in capsys.readouterr().err
    assert _run(repo, "--service", "orders", "--add-table", "customers",
                "--primary-key", "nme") == 2
    assert "did you mean name" in capsys.readouterr().err


def test_suggestions(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(repo, "--service", "ordrs", "--inspect") == 2
    assert "did you mean orders" in capsys.readouterr().err
    assert _run(repo, "--service", "orders", "--add-table", "custmers") == 2
    assert "did you mean customers" in capsys.readouterr().err
    assert _run(repo, "--service", "orders", "--remove-table", "order_line") == 2
    assert "did you mean order_lines" in capsys.readouterr().err


def test_filters_are_checked(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _service(repo)
    for bad, message in [("regon = 'eu'", "did you mean 'region'"),
                         ("region = 'eu'; DROP TABLE orders", "single expression"),
                         ("region = (SELECT 'eu')", "subqueries")]:
        assert _run(repo, "--service", "orders", "--add-table", "customers",
                    "--filter", bad) == 2
        assert message in capsys.readouterr().err
    assert _service(repo) == before


def test_remove_table_keeps_comments(repo: Path) -> None:
    assert _run(repo, "--service", "orders", "--remove-table", "orders") == 0
    text = _service(repo)
    assert text.startswith("# the orders service\n")
    assert "# order lines, keyed by order and line number\n" in text
    assert "name: orders " not in text


def test_last_table_cannot_be_removed(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(repo, "--service", "orders", "--remove-table", "orders") == 0
    assert _run(repo, "--service", "orders", "--remove-table", "order_lines") == 2
    assert "last table" in capsys.readouterr().err


def test_remove_moves_the_comment_of_the_next_entry() -> None:
    text = (REPO_ROOT / "services" / "directory.yaml").read_text()
    out = manage.remove_table_text(text, "directory.yaml", "directory", "users", None)
    assert out == text.replace("    - name: users\n      primary_key: id\n", "")
    text = (REPO_ROOT / "services" / "accounting.yaml").read_text()
    out = manage.remove_table_text(text, "accounting.yaml", "accounting", "invoice_lines", None)
    assert out == text.replace("    - schema: public\n      name: invoice_lines\n"
                               "      primary_key: [invoice_id, line_no]  # composite key\n", "")


# the same service in layouts people write: indentless list, `---` with a comment
# above it, CRLF line ends, four-space indents
INDENTLESS = """\
# orders, as the team writes YAML
---
service: orders
server_group: shop
source:
  type: postgres
  tables:
  - schema: public
    name: orders
    primary_key: id  # composite key
  # order lines
  - schema: public
    name: order_lines
    primary_key: [order_id, line_no]
"""
LAYOUTS = {
    "indentless": INDENTLESS,
    "crlf": INDENTLESS.replace("\n", "\r\n"),
    "bom, --- with a comment, ...": "\ufeff--- # orders\n" + INDENTLESS.split("---\n", 1)[1]
                                    + "...\n# the end\n",
    "four-spaces": """\
service: orders
server_group: shop
source:
    type: postgres
    tables:
        - schema: public
          name: orders
          primary_key: id  # composite key
        - schema: public
          name: order_lines
          primary_key: [order_id, line_no]
""",
}
ADDED = {  # the entry add_table_text appends in each layout
    "indentless": "  - schema: public\n    name: customers\n    primary_key: customer_no\n",
    "crlf": "  - schema: public\r\n    name: customers\r\n    primary_key: customer_no\r\n",
    "four-spaces": ("        - schema: public\n          name: customers\n"
                    "          primary_key: customer_no\n"),
}


def test_unchanged_round_trip_is_byte_identical(tmp_path: Path) -> None:
    texts = [p.read_text() for p in (REPO_ROOT / "services").glob("*.yaml")]
    for text in [*texts, *LAYOUTS.values()]:
        assert manage._load(text).dump() == text


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_edits_keep_the_file_layout(layout: str) -> None:
    text = LAYOUTS[layout]
    table = manage.NewTable("public", "customers", ("customer_no",))
    added = manage.add_table_text(text, "orders.yaml", table)
    if "..." in layout:  # the entry goes before the closing `...`
        body, end = text.split("...\n")
        assert added == body + ADDED["indentless"] + "...\n" + end
    else:
        assert added == text + ADDED[layout]
    removed = manage.remove_table_text(added, "orders.yaml", "orders", "customers", None)
    assert removed == text


def test_schema_validation_before_writing(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _service(repo)
    assert _run(repo, "--service", "orders", "--add-table", "bad-name", "--offline",
                "--primary-key", "id") == 1
    assert "does not match the required pattern" in capsys.readouterr().err
    assert _service(repo) == before
    assert _run(repo, "--service", "orders", "--add-table", "later", "--offline") == 2


def test_create_service(repo: Path, pg_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    groups = repo / "server-groups.yaml"
    text = groups.read_text()
    entry = f"      - name: {pg_db}\n        service: orders\n"
    assert entry in text
    groups.write_text(text.replace(entry, entry + entry.replace("orders", "crm")))
    assert _run(repo, "--create", "crm", "--server-group", "shpo", "--add-table", "x") == 2
    assert "did you mean shop" in capsys.readouterr().err
    assert _run(repo, "--create", "crm", "--server-group", "shop") == 2
    capsys.readouterr()
    # what the new service could capture, before it exists
    assert _run(repo, "--create", "crm", "--server-group", "shop", "--inspect") == 0
    listed = capsys.readouterr().out
    assert re.search(r"^public\.customers +customer_no ", listed, re.MULTILINE), listed
    assert not (repo / "services" / "crm.yaml").exists()
    assert _run(repo, "--create", "crm", "--server-group", "shop",
                "--add-table", "customers") == 0
    # no schemas/ folder in this repository: no `$schema` line pointing at nothing
    assert "no `$schema` line for editors" in capsys.readouterr().err
    assert (repo / "services" / "crm.yaml").read_text() == (
        "service: crm\nserver_group: shop\n\nsource:\n  type: postgres\n  tables:\n"
        "    - schema: public\n      name: customers\n      primary_key: customer_no\n")
    assert _run(repo, "--create", "crm", "--server-group", "shop", "--add-table", "x") == 2
    assert sorted(os.listdir(repo / "services")) == ["crm.yaml", "orders.yaml"]
    # with the schemas where the line points, the line is there
    (repo / "services" / "crm.yaml").unlink()
    (repo / "schemas").mkdir()
    (repo / "schemas" / "service.schema.json").write_text("{}")
    assert _run(repo, "--create", "crm", "--server-group", "shop",
                "--add-table", "customers") == 0
    first = (repo / "services" / "crm.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=../schemas/service.schema.json"
    assert (repo / "services" / first.split("$schema=")[1]).resolve().is_file()


def test_write_atomic_keeps_mode_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "s.yaml"
    target.write_text("old\n")
    target.chmod(0o600)
    manage.write_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert target.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["s.yaml"]


def test_a_table_is_tracked_with_or_without_its_schema(repo: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """An entry without 'schema:' covers every schema of the database (here public),
    so adding the same table with or without --schema is refused both ways round."""
    before = _service(repo)
    assert _run(repo, "--service", "orders", "--add-table", "orders", "--offline",
                "--primary-key", "region") == 2
    assert "already tracks table 'public.orders'" in capsys.readouterr().err
    path = repo / "services" / "orders.yaml"
    path.write_text(before.replace("    - schema: public\n      name: orders",
                                   "    - name: orders"))
    assert "- name: orders  # the main table" in _service(repo)
    assert _run(repo, "--service", "orders", "--add-table", "orders", "--schema", "public",
                "--offline", "--primary-key", "region") == 2
    err = capsys.readouterr().err
    assert "already tracks table 'public.orders'\n  hint: to change its key or filter, first " \
        "run `cdc-generator manage-service --service orders --remove-table orders`" in err
    # ... and removing it with --schema says why that cannot work
    assert _run(repo, "--service", "orders", "--remove-table", "orders",
                "--schema", "public") == 2
    assert "through an entry without a schema" in capsys.readouterr().err
    # written by hand, validate finds it
    path.write_text(_service(repo) + "    - schema: public\n      name: orders\n"
                    "      primary_key: region\n")
    assert main(["validate", "--root", str(repo), "--format", "text"]) == 1
    err = capsys.readouterr().err
    assert "table 'public.orders' is listed twice (first at table #1)" in err


def test_a_yml_service_file_is_edited_in_place(repo: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    yaml_path = repo / "services" / "orders.yaml"
    yml_path = yaml_path.rename(repo / "services" / "orders.yml")
    assert main(["validate", "--root", str(repo)]) == 0
    assert _run(repo, "--service", "orders", "--remove-table", "order_lines") == 0
    assert "services/orders.yml: removed order_lines" in capsys.readouterr().err
    assert "order_lines" not in yml_path.read_text()
    assert _run(repo, "--service", "orders", "--add-table", "customers") == 0
    assert "name: customers" in yml_path.read_text()
    assert _run(repo, "--create", "orders", "--server-group", "shop", "--add-table",
                "shipments") == 2
    assert "services/orders.yml already exists" in capsys.readouterr().err
    assert not yaml_path.exists()
    assert main(["validate", "--root", str(repo)]) == 0


def test_a_crlf_file_stays_crlf(repo: Path) -> None:
    path = repo / "services" / "orders.yaml"
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    assert _run(repo, "--service", "orders", "--add-table", "customers") == 0
    data = path.read_bytes()
    assert b"name: customers\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert main(["validate", "--root", str(repo)]) == 0

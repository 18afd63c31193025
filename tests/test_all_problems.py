"""One run reports every problem in every file (issue 12, class 6): a file that is
not YAML, or fails its schema, does not hide a semantic error or a literal secret
in another file, nor in another entry of the same file.

The corpus is every pairing of a way to break one file (YAML, characters,
schema) with a semantic error or a literal secret elsewhere.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.hostile import FORMATS, problems, run, sample, scratch

GROUPS = "server-groups.yaml"
DIRECTORY = "services/directory.yaml"
SECRET = "Pw-4sd8-Kq2"

# ways to break a file: (old text, new text); in server-groups.yaml they break the
# first group (asma) or the whole file, and the semantic errors are in the second
BREAK_GROUPS = {
    "yaml syntax": ("    server_group_type: db-shared  # Key: defines pattern",
                    "    server_group_type: [db-shared"),
    "tab": ("    isolation: schema", "\tisolation: schema"),
    "nul": ("  - name: asma", "  - name: as\x00ma"),
    "unknown key in a group": ("    isolation: schema", "    isolation: schema\n    colour: red"),
    "wrong enum in a group": ("server_group_type: db-shared", "server_group_type: db-sharded"),
    "wrong type of environments": ("environments:\n  nonprod:", "environments: 5\nx_nonprod:"),
    "bad host in a group": ("host: ${POSTGRES_ASMA_HOST}", "host: 'db?ssl=1'"),
    "duplicate key": ("    isolation: schema", "    isolation: schema\n    isolation: column"),
}
BREAK_SERVICE = {
    "yaml syntax": ("server_group: asma", "server_group: [asma"),
    "tab": ("  type: postgres", "\ttype: postgres"),
    "unknown key": ("  type: postgres", "  type: postgres\n  colour: red"),
    "wrong type": ("      primary_key: code", "      primary_key: {a: 1}"),
    "bad table name": ("    - name: users", "    - name: 'users\\n'"),
}
# semantic errors and secrets: (file, old, new, text the problem must hold)
SEMANTIC = {
    "literal password": (GROUPS, "      password: ${POSTGRES_ADOPUS_PASSWORD}",
                         f"      password: {SECRET}", "literal value"),
    "schema twice": (GROUPS, "        customer: initech",
                     "        customer: initech\n        schemas: [public, Public]",
                     "listed twice in database"),
    "customer twice": (GROUPS, "customer: globex", "customer: acme", "appears twice"),
    "missing primary key": ("services/accounting.yaml",
                            "      name: invoices\n      primary_key: id",
                            "      name: invoices", "has no primary_key"),
    "table twice": ("services/accounting.yaml", "      name: invoice_lines",
                    "      name: invoices", "is listed twice"),
    "bad filter": ("services/accounting.yaml", "owner_id = '{{CUSTOMER_ID}}'",
                   "owner_id = {{CUSTOMER_ID}}", "not only inside quoted strings"),
    "url secret in the service": ("services/accounting.yaml", "server_group: adopus",
                                  f"server_group: adopus\n# x\nsource_url_note: "
                                  f"postgres://u:{SECRET}@h", "a URL with a password"),
}


def _apply(root: Path, file: str, old: str, new: str) -> None:
    path = root / file
    text = path.read_text()
    assert old in text, (file, old)
    path.write_text(text.replace(old, new, 1))


def _pairs() -> list[tuple[str, str, str, str]]:
    """(broken file, how, semantic case): each break with each semantic error in
    another file, or in another entry of the same file."""
    out = []
    for (how, _), what in itertools.product(BREAK_GROUPS.items(), SEMANTIC):
        out.append((GROUPS, how, what, SEMANTIC[what][0]))
    for (how, _), what in itertools.product(BREAK_SERVICE.items(), SEMANTIC):
        out.append((DIRECTORY, how, what, SEMANTIC[what][0]))
    return out


def test_a_broken_file_hides_nothing_elsewhere(tmp_path: Path) -> None:
    pairs = sample(_pairs(), 24)
    kept_going = 0
    for n, (broken, how, what, where) in enumerate(pairs):
        root = scratch(tmp_path / str(n), templates=False)
        file, old, new, message = SEMANTIC[what]
        _apply(root, file, old, new)
        breaks = BREAK_GROUPS if broken == GROUPS else BREAK_SERVICE
        _apply(root, broken, *breaks[how])
        found = problems(root)
        assert any(p.file == broken for p in found), (how, what, found)
        reported = any(p.file == where and message in p.message for p in found)
        # a semantic error that needs the broken part itself cannot be seen
        needs_broken = where == broken and how in ("yaml syntax", "tab", "nul", "duplicate key",
                                                   "wrong type of environments")
        if needs_broken and not reported:
            continue
        assert reported, (how, what, found)
        kept_going += 1
    assert kept_going >= len(pairs) * 3 // 4
    assert len(_pairs()) == 91


@pytest.mark.parametrize("fmt", FORMATS)
def test_schema_error_semantic_error_and_secret_in_one_run(fmt: str, tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo")
    _apply(root, DIRECTORY, *BREAK_SERVICE["unknown key"])
    for what in ("literal password", "missing primary key", "schema twice"):
        _apply(root, *SEMANTIC[what][:3])
    outcome = run(root, "validate", fmt=fmt)
    outcome.assert_handled()
    for part in ("unknown key 'colour'", "literal value", "has no primary_key",
                 "listed twice in database"):
        assert part in outcome.text, (part, outcome.text)
    assert SECRET not in outcome.text
    assert "4 problem(s)" in outcome.text or fmt != "text"

"""Row filters: hostile and odd input is refused, or re-printed safely."""

from __future__ import annotations

from typing import Any

import pytest
from pglast import parse_sql

from cdc_generator import rowfilter


def _tree(expression: str) -> Any:
    stmt: Any = parse_sql(f"SELECT 1 WHERE {expression}")[0].stmt
    return stmt.whereClause


REJECTED = [
    ("1=1; DROP TABLE x", "single expression"),
    ("owner_id = 'a'; DROP TABLE invoices", "single expression"),
    (") OR (1=1", "not a valid SQL expression"),
    ("owner_id = 'a') OR (1=1", "not a valid SQL expression"),
    ("1=1", "at least one column"),
    ("true", "boolean expression"),
    ("owner_id = 'a' /* unterminated", "not a valid SQL expression"),
    ("owner_id = (SELECT max(id) FROM users)", "subqueries"),
    ("EXISTS (SELECT 1 FROM pg_shadow)", "subqueries"),
    ("pg_sleep(10) IS NOT NULL", "'pg_sleep' is not allowed"),
    ("generate_series(1, 10) = id", "'generate_series' is not allowed"),
    ("pg_catalog.pg_read_file('/etc/passwd') = owner_id", "is not allowed"),
    ("public.evil(owner_id)", "is not allowed"),
    ("count(*) > 1", "is not allowed"),
    ("other_table.owner_id = 'a'", "qualified"),
    ("public.t.owner_id = 'a'", "qualified"),
    ("owner_id = $1", "parameters"),
    ("ctid = '(0,1)'", "system column"),
    ("xmin = 1", "system column"),
    ("owner_id = 'a' ORDER BY 1", "boolean expression only"),
    ("owner_id = 'a' UNION SELECT 1", "boolean expression only"),
    ("owner_id = 'a' LIMIT 1", "boolean expression only"),
    ("owner_id = 'a' FOR UPDATE", "boolean expression only"),
    ("owner_id = 'a' GROUP BY 1", "boolean expression only"),
    ("id + 1", "boolean expression"),
    ("owner_id OPERATOR(pg_catalog.=) 'a'", "schema-qualified operators"),
    ("owner_id::regclass IS NULL", "cast to 'regclass'"),
    ("id::int[] IS NULL", "cast to"),
    ("owner_id COLLATE \"C\" = 'a'", "COLLATE"),
    ("created < current_date", "CURRENT_DATE"),
    ("CASE WHEN id > 1 THEN true END", "CASE"),
    ("owner_id SIMILAR TO 'a%'", "SIMILAR"),
    ("", "must not be empty"),
    ("x" * 5000 + " = 1", "at most"),
    ("lower(DISTINCT owner_id) = 'a'", "plain call"),
]


@pytest.mark.parametrize(("expression", "message"), REJECTED)
def test_rejected(expression: str, message: str) -> None:
    with pytest.raises(rowfilter.RowFilterError) as info:
        rowfilter.canonical(expression)
    assert message in str(info.value)


SAFE = [
    ("owner_id = 'acme'", "owner_id = 'acme'"),
    ("owner_id = 'a' -- OR 1=1", "owner_id = 'a'"),
    ("owner_id = 'a' /* OR 1=1 */", "owner_id = 'a'"),
    ("owner_id = $$a'; DROP TABLE x; --$$", "owner_id = 'a''; DROP TABLE x; --'"),
    ("owner_id = $tag$x$tag$", "owner_id = 'x'"),
    ("owner_id = 'it''s'", "owner_id = 'it''s'"),
    ("owner_id = E'a\\'b'", "owner_id = 'a''b'"),
    ('"Owner Id" = 1', '"Owner Id" = 1'),
    ('"weird""name" = 1', '"weird""name" = 1'),
    ('"naïve" = 1', '"naïve" = 1'),
    ('U&"d\\0061ta" = 1', "data = 1"),
    ("OWNER_ID = 'A'", "owner_id = 'A'"),
    ("region IN ('eu', 'us') AND NOT deleted", "region IN ('eu', 'us') AND NOT deleted"),
    ("amount BETWEEN 1 AND 10", "amount BETWEEN 1 AND 10"),
    ("amount NOT BETWEEN 1 AND 10", "amount NOT BETWEEN 1 AND 10"),
    ("lower(name) LIKE 'a%' OR upper(name) ILIKE 'B%'",
     "lower(name) LIKE 'a%' OR upper(name) ILIKE 'B%'"),
    ("coalesce(owner_id, 'x') = 'x'", "COALESCE(owner_id, 'x') = 'x'"),
    ("deleted_at IS NULL AND active IS TRUE", "deleted_at IS NULL AND active IS TRUE"),
    ("id::text = '1'", "CAST(id AS text) = '1'"),
    ("abs(balance) > 100.5 AND length(code) <= 3", "abs(balance) > 100.5 AND length(code) <= 3"),
    ("owner_id <> 'x' AND id % 2 = 0", "owner_id <> 'x' AND id % 2 = 0"),
    ("owner_id IS DISTINCT FROM 'x'", "owner_id IS DISTINCT FROM 'x'"),
    ("active", "active"),
]


@pytest.mark.parametrize(("expression", "expected"), SAFE)
def test_safe_filters_are_reprinted(expression: str, expected: str) -> None:
    text = rowfilter.canonical(expression)
    assert text == expected
    # the canonical text means exactly what was written, and is stable
    assert _tree(text) == _tree(expression)
    assert rowfilter.canonical(text) == text


TENANT_REJECTED = [(e.replace("'a'", f"'{rowfilter.CUSTOMER_PLACEHOLDER}'", 1), m)
                   for e, m in REJECTED if "'a'" in e]


@pytest.mark.parametrize(("template", "message"), TENANT_REJECTED)
def test_rejected_through_the_tenant_path(template: str, message: str) -> None:
    """The plan's per-tenant shortcut (TenantFilters) refuses all that canonical does."""
    filters = rowfilter.TenantFilters()
    for customer in ("acme", "globex"):  # the second one may take the shortcut
        with pytest.raises(rowfilter.RowFilterError) as info:
            filters.canonical(template, customer)
        assert message in str(info.value)


def test_columns_are_checked_when_known() -> None:
    assert rowfilter.canonical("owner_id = 'a'", ["id", "owner_id"]) == "owner_id = 'a'"
    with pytest.raises(rowfilter.RowFilterError, match="unknown column 'ownr_id'") as info:
        rowfilter.canonical("ownr_id = 'a'", ["id", "owner_id"])
    assert "owner_id" in info.value.hint


def test_referenced_columns() -> None:
    assert rowfilter.referenced_columns(
        "a = 1 AND (lower(b) LIKE 'x' OR c IN (1, 2)) AND d IS NULL") == {"a", "b", "c", "d"}


@pytest.mark.parametrize(("ours", "stored"), [
    ("owner_id = 'acme'", "(owner_id = 'acme'::text)"),
    ("x IN (1, 2)", "(x = ANY (ARRAY[1, 2]))"),
    ("x NOT IN ('a', 'b')", "(x <> ALL (ARRAY['a'::text, 'b'::text]))"),
    ("y BETWEEN 1 AND 2 AND n LIKE 'a%'", "((y >= 1) AND (y <= 2) AND (n ~~ 'a%'::text))"),
    ("x > -1", "(x > '-1'::integer)"),
])
def test_equivalent_to_postgres_rendering(ours: str, stored: str) -> None:
    assert rowfilter.equivalent(ours, stored)


def test_not_equivalent() -> None:
    assert not rowfilter.equivalent("owner_id = 'acme'", "(owner_id = 'globex'::text)")
    assert not rowfilter.equivalent("owner_id = 'acme'", "not sql at all (")

"""Parsing a row filter and checking it against the allow-list: `canonical`."""

from __future__ import annotations

import difflib
import re
from collections.abc import Collection, Iterator
from typing import Any

CUSTOMER_PLACEHOLDER = "{{CUSTOMER_ID}}"  # in a db-per-tenant filter: the tenant id

MAX_LENGTH = 4000
#: immutable built-ins PostgreSQL also accepts in a publication row filter
ALLOWED_FUNCTIONS = frozenset({
    "lower", "upper", "abs", "length", "char_length", "btrim", "ltrim", "rtrim",
})
ALLOWED_TYPES = frozenset({
    "bool", "boolean", "int2", "int4", "int8", "smallint", "integer", "int", "bigint",
    "numeric", "decimal", "float4", "float8", "real", "text", "varchar", "bpchar", "char",
    "uuid", "date",
})
COMPARISONS = frozenset({"=", "<>", "<", ">", "<=", ">="})
ARITHMETIC = frozenset({"+", "-", "*", "/", "%", "||"})
SYSTEM_COLUMNS = frozenset({"ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"})
_MAX_DEPTH = 64
# C0/C1 controls but tab and line breaks, the Unicode line separators and the
# bidirectional controls that make a filter read differently from what it does
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e"
                      "\u2066-\u2069]")


class RowFilterError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def canonical(expression: str, columns: Collection[str] | None = None) -> str:
    """Check `expression` and return it re-printed by pglast (safe to embed in SQL).

    `columns`, when known, are the table's column names: a filter naming any
    other column is refused.
    """
    tree = _parse(expression)
    found = _checked_columns(tree)
    if columns is not None:
        known = set(columns)
        for name in sorted(found - known):
            close = difflib.get_close_matches(name, sorted(known), n=1)
            raise RowFilterError(
                f"unknown column {name!r}",
                f"did you mean {close[0]!r}?" if close
                else f"the table's columns: {', '.join(sorted(known)) or 'none'}",
            )
    return _deparse(tree)


def referenced_columns(expression: str) -> frozenset[str]:
    """The column names a (valid) filter reads."""
    return frozenset(_checked_columns(_parse(expression)))


# ---------------------------------------------------------------- parsing


def parse_any(expression: str) -> Any:
    from pglast import parse_sql
    from pglast.parser import ParseError

    if len(expression) > MAX_LENGTH:
        raise RowFilterError(f"a filter may be at most {MAX_LENGTH} characters")
    check_characters(expression)
    try:
        statements = parse_sql(f"SELECT 1 WHERE {expression}")
    except ParseError as exc:
        raise RowFilterError(
            f"not a valid SQL expression: {exc}",
            "write a boolean expression such as owner_id = 'acme'",
        ) from None
    if len(statements) != 1:
        raise RowFilterError("a filter must be a single expression (no ';')",
                             "remove everything after the expression")
    stmt: Any = statements[0].stmt
    reference: Any = parse_sql("SELECT 1 WHERE true")[0].stmt
    for slot in type(stmt).__slots__:
        if slot != "whereClause" and getattr(stmt, slot) != getattr(reference, slot):
            raise RowFilterError(
                "a filter must be a boolean expression only",
                "remove clauses such as ORDER BY, GROUP BY, LIMIT, UNION or FOR UPDATE",
            )
    if stmt.whereClause is None:
        raise RowFilterError("a filter must be a boolean expression")
    return stmt.whereClause


def check_characters(expression: str) -> None:
    """Refuse control characters: PostgreSQL's parser stops at a NUL, so what
    follows would vanish unseen, and the others hide what a filter says."""
    control = _CONTROL.search(expression)
    if control is not None:
        raise RowFilterError(
            f"a filter must not contain control characters (U+{ord(control.group()):04X} "
            f"at character {control.start() + 1})",
            "write the expression with printable characters, spaces and line breaks only")


def _parse(expression: str) -> Any:
    if not expression.strip():
        raise RowFilterError("a filter must not be empty")
    return parse_any(expression)


def _deparse(tree: Any) -> str:
    from pglast.stream import RawStream

    text: str = RawStream()(tree)
    return text


# ---------------------------------------------------------------- the allow-list


def _checked_columns(tree: Any) -> set[str]:
    from pglast import ast

    found: set[str] = set()
    for node in _walk(tree, 0):
        if isinstance(node, ast.ColumnRef):
            found.add(_column_name(node))
    if not _is_boolean(tree):
        raise RowFilterError(
            "a filter must be a boolean expression",
            "compare a column with a value, e.g. owner_id = 'acme'",
        )
    if not found:
        raise RowFilterError(
            "a filter must refer to at least one column",
            "a filter over constants only (such as 1=1) selects all rows or none",
        )
    return found


def _is_boolean(node: Any) -> bool:
    from pglast import ast
    from pglast.enums import A_Expr_Kind

    if isinstance(node, ast.A_Expr):
        if node.kind in (A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_NULLIF):
            return node.kind == A_Expr_Kind.AEXPR_OP and _operator(node) in COMPARISONS
        return True
    if isinstance(node, ast.TypeCast):
        return _type_name(node.typeName) in ("bool", "boolean")
    return isinstance(node, ast.BoolExpr | ast.NullTest | ast.BooleanTest | ast.ColumnRef)


def _walk(node: Any, depth: int) -> Iterator[Any]:
    """Every node of the expression, refusing anything outside the allow-list."""
    from pglast import ast
    from pglast.enums import A_Expr_Kind

    if depth > _MAX_DEPTH:
        raise RowFilterError("the filter is nested too deeply")
    if isinstance(node, tuple | list):
        for item in node:
            yield from _walk(item, depth + 1)
        return
    yield node
    children: tuple[Any, ...]
    if isinstance(node, ast.ColumnRef):
        _column_name(node)
        return
    if isinstance(node, ast.A_Const):
        return
    if isinstance(node, ast.A_Expr):
        if node.kind in (A_Expr_Kind.AEXPR_SIMILAR,):
            raise RowFilterError("SIMILAR TO is not supported in a filter", "use LIKE")
        op = _operator(node)
        if node.kind == A_Expr_Kind.AEXPR_OP and op not in COMPARISONS | ARITHMETIC:
            raise RowFilterError(f"operator {op!r} is not allowed in a filter",
                                 "use comparisons, arithmetic, AND, OR, NOT, IN, LIKE")
        if node.kind in (A_Expr_Kind.AEXPR_OP_ANY, A_Expr_Kind.AEXPR_OP_ALL) and not (
            isinstance(node.rexpr, ast.A_ArrayExpr)
        ):
            raise RowFilterError("ANY/ALL needs an ARRAY[...] of values",
                                 "write col IN (a, b) instead")
        children = (node.lexpr, node.rexpr)
    elif isinstance(node, ast.BoolExpr):
        children = tuple(node.args or ())
    elif isinstance(node, ast.NullTest | ast.BooleanTest):
        children = (node.arg,)
    elif isinstance(node, ast.TypeCast):
        _check_type(node.typeName)
        children = (node.arg,)
    elif isinstance(node, ast.FuncCall):
        _check_function(node)
        children = tuple(node.args or ())
    elif isinstance(node, ast.CoalesceExpr):
        children = tuple(node.args or ())
    elif isinstance(node, ast.A_ArrayExpr):
        children = tuple(node.elements or ())
    else:
        raise RowFilterError(*_refusal(node))
    for child in children:
        if child is not None:
            yield from _walk(child, depth + 1)


def _refusal(node: Any) -> tuple[str, str]:
    kind = type(node).__name__
    reasons = {
        "SubLink": ("subqueries are not allowed in a filter",
                    "a publication row filter can only read the row itself"),
        "ParamRef": ("parameters ($1) are not allowed in a filter", "write the value literally"),
        "SQLValueFunction": ("CURRENT_DATE, CURRENT_USER and the like are not allowed",
                             "a row filter must be immutable: write the value literally"),
        "CollateClause": ("COLLATE is not allowed in a filter", ""),
        "RowExpr": ("row constructors are not allowed in a filter", ""),
        "CaseExpr": ("CASE is not allowed in a filter", "combine conditions with AND / OR"),
        "A_Indirection": ("subscripts and field selection are not allowed in a filter", ""),
    }
    return reasons.get(kind, (f"{kind} is not allowed in a filter",
                              "use columns, constants, comparisons, AND/OR/NOT, IN, "
                              "BETWEEN, LIKE, IS NULL and simple casts"))


def _column_name(node: Any) -> str:
    from pglast import ast

    fields = node.fields
    if len(fields) != 1 or not isinstance(fields[0], ast.String):
        raise RowFilterError(
            "qualified or star column references are not allowed in a filter",
            "name the table's own column without a table or schema prefix",
        )
    name = str(fields[0].sval)
    if name in SYSTEM_COLUMNS:
        raise RowFilterError(f"system column {name!r} is not allowed in a filter",
                             "filter on the table's own columns")
    return name


def _operator(node: Any) -> str:
    names = [str(n.sval) for n in node.name]
    if len(names) != 1:
        raise RowFilterError("schema-qualified operators are not allowed in a filter",
                             "write the plain operator, e.g. =")
    return names[0]


def _type_name(type_name: Any) -> str:
    names = [str(n.sval) for n in type_name.names]
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    return names[0] if len(names) == 1 else ".".join(names)


def _check_type(type_name: Any) -> None:
    from pglast import ast

    name = _type_name(type_name)
    simple = (name in ALLOWED_TYPES and not type_name.arrayBounds and not type_name.setof
              and not type_name.pct_type)
    mods = type_name.typmods or ()
    if not simple or not all(
        isinstance(m, ast.A_Const) and isinstance(m.val, ast.Integer) for m in mods
    ):
        raise RowFilterError(f"cast to {name!r} is not allowed in a filter",
                             f"cast to one of: {', '.join(sorted(ALLOWED_TYPES))}")


def _check_function(node: Any) -> None:
    names = [str(n.sval) for n in node.funcname]
    if len(names) == 2 and names[0] == "pg_catalog":
        names = names[1:]
    name = ".".join(names)
    if name not in ALLOWED_FUNCTIONS:
        raise RowFilterError(
            f"function {name!r} is not allowed in a filter",
            f"allowed: coalesce, {', '.join(sorted(ALLOWED_FUNCTIONS))}",
        )
    if (node.agg_star or node.agg_distinct or node.agg_order or node.agg_filter
            or node.over or node.func_variadic or node.agg_within_group):
        raise RowFilterError(f"{name}() must be a plain call in a filter")

"""Per-tenant row filters, parsed with PostgreSQL's own grammar (pglast).

A filter ends up inside generated SQL (`CREATE PUBLICATION ... WHERE (...)`)
and inside Debezium's snapshot SELECT, so it is never used as the user wrote
it: it is parsed, checked against an allow-list of node types, and printed
again by pglast's deparser. Only a boolean expression over the table's own
columns and constants passes: no subqueries, no parameters, no second
statement, no function outside a short list of immutable built-ins.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Collection, Iterator
from functools import cache
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


def equivalent(ours: str, stored: str) -> bool:
    """Whether a filter and PostgreSQL's own rendering of one (pg_publication_tables.rowfilter)
    mean the same, ignoring casts, parentheses and the rewrites PostgreSQL applies
    (IN -> = ANY(ARRAY[...]), LIKE -> ~~, BETWEEN -> >= AND <=)."""
    try:
        return bool(_normal(_parse_any(ours)) == _normal(_parse_any(stored)))
    except RowFilterError:
        return False


# ---------------------------------------------------------------- parsing


def _parse_any(expression: str) -> Any:
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
    return _parse_any(expression)


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


# ---------------------------------------------------------------- comparison


def _normal(node: Any) -> Any:
    """A hashable form of an expression that PostgreSQL's rewrites do not change."""
    from pglast import ast
    from pglast.enums import A_Expr_Kind, BoolExprType

    if isinstance(node, tuple | list):
        return tuple(_normal(n) for n in node)
    if isinstance(node, ast.TypeCast):
        return _normal(node.arg)
    if isinstance(node, ast.A_Const):
        return ("const", None if node.isnull else str(getattr(node.val, _value_slot(node.val))))
    if isinstance(node, ast.ColumnRef):
        return ("col", tuple(str(getattr(f, "sval", "*")) for f in node.fields or ()))
    if isinstance(node, ast.BoolExpr):
        flat: list[Any] = []
        for arg in node.args or ():
            normal = _normal(arg)
            same = node.boolop != BoolExprType.NOT_EXPR and normal[:2] == ("bool", node.boolop)
            flat.extend(normal[2] if same else [normal])
        return ("bool", node.boolop, tuple(flat))
    if isinstance(node, ast.FuncCall):
        func_names: Any = node.funcname
        return ("func", str(func_names[-1].sval), _normal(node.args or ()))
    if isinstance(node, ast.A_Expr):
        op = ".".join(str(n.sval) for n in node.name or ())
        left, right = _normal(node.lexpr), _normal(node.rexpr)
        if node.kind in (A_Expr_Kind.AEXPR_IN, A_Expr_Kind.AEXPR_OP_ANY,
                         A_Expr_Kind.AEXPR_OP_ALL):
            elements = right[2] if right[:1] == ("array",) else right
            return ("in", op, left, elements)
        if node.kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_NOT_BETWEEN):
            bounds: Any = node.rexpr
            low, high = _normal(bounds[0]), _normal(bounds[1])
            if node.kind == A_Expr_Kind.AEXPR_BETWEEN:
                return ("bool", BoolExprType.AND_EXPR,
                        (("op", ">=", left, low), ("op", "<=", left, high)))
            return ("bool", BoolExprType.OR_EXPR,
                    (("op", "<", left, low), ("op", ">", left, high)))
        if node.kind in (A_Expr_Kind.AEXPR_OP, A_Expr_Kind.AEXPR_LIKE,
                         A_Expr_Kind.AEXPR_ILIKE):
            return ("op", op, left, right)
        return ("expr", str(node.kind), op, left, right)
    if isinstance(node, ast.A_ArrayExpr):
        return ("array", None, _normal(node.elements or ()))
    if isinstance(node, ast.Node):
        return (type(node).__name__, tuple(
            _normal(getattr(node, slot)) for slot in getattr(type(node), "__slots__", ())
            if slot != "location" and not slot.endswith(("_start", "_end"))
        ))
    return node


def _value_slot(value: Any) -> str:
    return str(next(iter(type(value).__slots__)))


# ------------------------------------------------ many tenants, one filter

_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]+")
_SAFE_OPERANDS = frozenset({"AEXPR_OP", "AEXPR_IN", "AEXPR_LIKE", "AEXPR_ILIKE"})
_WRAP = "SELECT 1 WHERE "


class TenantFilters:
    """`rowfilter.canonical` of every tenant's filter, for one plan.

    Re-printing a filter through pglast costs about half a millisecond, once per
    tenant database. The usual tenant filter (`owner_id = '{{CUSTOMER_ID}}'`)
    differs between tenants only inside a string constant, which the printer
    writes back verbatim. So a filter is printed once per id length with a
    same-length sentinel in place of the id, and each tenant's result is that
    text with the sentinel replaced, but only after the tenant's own parse tree
    (pglast's JSON, with token locations; a few microseconds) has been found
    equal to the sentinel's tree with the same replacement. Anything else (the
    id outside a plain string operand of =, IN or LIKE, an id with quotes,
    an unparsable filter) takes the full `rowfilter.canonical` path.
    """

    def __init__(self) -> None:
        self._done: dict[str, str] = {}
        self._templates: dict[tuple[str, int], tuple[str, str, str] | None] = {}

    def canonical(self, template: str, customer: str | None) -> str:
        text = template if customer is None else template.replace(CUSTOMER_PLACEHOLDER, customer)
        done = self._done.get(text)
        if done is None:
            done = self._done[text] = self._fast(template, customer, text) or canonical(
                text)
        return done

    def _fast(self, template: str, customer: str | None, text: str) -> str | None:
        if (customer is None or CUSTOMER_PLACEHOLDER not in template
                or not _CUSTOMER_ID.fullmatch(customer)):
            return None
        key = (template, len(customer))
        if key not in self._templates:
            self._templates[key] = _sentinel_form(template, len(customer))
        found = self._templates[key]
        if found is None:
            return None
        sentinel, tree, printed = found
        from pglast.parser import ParseError, parse_sql_json

        try:
            own = parse_sql_json(_WRAP + text)
        except ParseError:
            return None
        if own != tree.replace(sentinel, customer):
            return None
        return printed.replace(sentinel, customer)


def _sentinel_form(template: str, length: int) -> tuple[str, str, str] | None:
    """(sentinel, parse tree JSON, canonical text) of `template` with a sentinel id
    of `length` characters, or None when the shortcut would not be exact."""
    from pglast.parser import ParseError, parse_sql_json

    sentinel = ("zqjx" * length)[:length]
    if sentinel in template.replace(CUSTOMER_PLACEHOLDER, ""):
        return None
    text = template.replace(CUSTOMER_PLACEHOLDER, sentinel)
    try:
        tree = parse_sql_json(_WRAP + text)
        printed = canonical(text)
    except (ParseError, RowFilterError):
        return None
    in_constants = _count_in_constants(json.loads(tree), sentinel, operand=False)
    if (not in_constants or tree.count(sentinel) != in_constants
            or printed.count(sentinel) != in_constants):
        return None
    return sentinel, tree, printed


def _count_in_constants(node: Any, sentinel: str, *, operand: bool) -> int:
    """Occurrences of `sentinel` in `node` (a pglast JSON tree) that are inside a plain
    string constant that is an operand of a comparison, IN or LIKE; the caller compares
    this with all occurrences."""
    if isinstance(node, list):
        return sum(_count_in_constants(item, sentinel, operand=operand) for item in node)
    if not isinstance(node, dict):
        return 0
    if operand and set(node) == {"A_Const"}:
        const = node["A_Const"]
        value = const.get("sval")
        if (set(const) <= {"sval", "location"} and isinstance(value, dict)
                and set(value) == {"sval"} and isinstance(value["sval"], str)):
            return int(value["sval"].count(sentinel))
    if operand and set(node) == {"List"}:
        return _count_in_constants(node["List"], sentinel, operand=True)
    expr = node.get("A_Expr")
    if isinstance(expr, dict) and set(node) == {"A_Expr"} and expr.get("kind") in _SAFE_OPERANDS:
        return sum(_count_in_constants(value, sentinel, operand=key in {"lexpr", "rexpr"})
                   for key, value in expr.items())
    return sum(_count_in_constants(value, sentinel, operand=operand and key == "items")
               for key, value in node.items())


# ------------------------------------------------ what a tenant id may change

_LIKE_KINDS = frozenset({"AEXPR_LIKE", "AEXPR_ILIKE"})


def substitution_problem(template: str, customer: str) -> str | None:
    """Why putting `customer` for {{CUSTOMER_ID}} in `template` could make the
    filter mean something else than "this column holds the tenant's id", or None.

    The filter must parse, with the real id in place, to exactly the tree it has
    with a neutral id of the same length, and that id must sit only inside string
    constants: then the id is a literal and nothing else. In a LIKE pattern an id
    holding '_' or '%' would be a wildcard.
    """
    form = _neutral_form(template, len(customer))
    if isinstance(form, str):
        return form
    sentinel, tree, like = form
    from pglast.parser import ParseError, parse_sql_json

    try:
        own = parse_sql_json(_WRAP + template.replace(CUSTOMER_PLACEHOLDER, customer))
    except ParseError:
        return "the filter is not valid SQL with this id in place"
    # the sentinel occurs in the tree's text only where the id was put (_neutral_form)
    if own != tree.replace(sentinel, customer):
        return "the id changes how the filter parses"
    if like and any(c in customer for c in "_%\\"):
        return "the id holds '_' or '%', which a LIKE pattern reads as a wildcard"
    return None


def placement_problem(template: str) -> str | None:
    """Why {{CUSTOMER_ID}} stands where no id could be a plain literal, whatever
    the ids are; None when it stands only inside string constants."""
    form = _neutral_form(template, 8)
    return form if isinstance(form, str) else None


@cache
def _neutral_form(template: str, length: int) -> tuple[str, str, bool] | str:
    """(sentinel, parse tree JSON, whether the id is in a LIKE pattern) of
    `template` with a neutral id of `length` letters; or why the id is not a
    plain string constant there."""
    from pglast.parser import ParseError, parse_sql_json

    if not length:
        return "an empty id cannot be substituted"
    rest = template.replace(CUSTOMER_PLACEHOLDER, "\0").lower()
    for sentinel in (c * length for c in "qzjxkvwy"):
        if sentinel in rest:
            continue
        try:
            tree = parse_sql_json(_WRAP + template.replace(CUSTOMER_PLACEHOLDER, sentinel))
        except ParseError:
            return "the filter is not valid SQL with an id in place"
        data = json.loads(tree)
        placed = _value_count(data, sentinel)
        if tree.count(sentinel) != placed:
            continue  # also in the tree's own words (a short sentinel): try another
        in_constants, in_like = _constant_counts(data, sentinel, like=False)
        if in_constants != placed or not in_constants:
            return (f"{CUSTOMER_PLACEHOLDER} is not only inside quoted strings: elsewhere the "
                    "id would be read as SQL (a column, a number, an operator) or ignored "
                    "(a comment)")
        return sentinel, tree, in_like > 0
    return "no neutral id fits the filter"  # eight letters, each in runs as long as the id


def _value_count(node: Any, sentinel: str) -> int:
    """Occurrences of `sentinel` in the string values (not the keys) of a JSON tree."""
    if isinstance(node, str):
        return node.count(sentinel)
    if isinstance(node, list):
        return sum(_value_count(item, sentinel) for item in node)
    if isinstance(node, dict):
        return sum(_value_count(item, sentinel) for item in node.values())
    return 0


def _constant_counts(node: Any, sentinel: str, *, like: bool) -> tuple[int, int]:
    """(occurrences of `sentinel` inside string constants, of those in LIKE patterns)."""
    if isinstance(node, list):
        pairs = [_constant_counts(item, sentinel, like=like) for item in node]
        return sum(p[0] for p in pairs), sum(p[1] for p in pairs)
    if not isinstance(node, dict):
        return 0, 0
    const = node.get("A_Const")
    if isinstance(const, dict) and set(node) == {"A_Const"}:
        value = const.get("sval")
        text = value.get("sval") if isinstance(value, dict) else None
        found = text.count(sentinel) if isinstance(text, str) else 0
        return found, found if like else 0
    expr = node.get("A_Expr")
    in_like = isinstance(expr, dict) and expr.get("kind") in _LIKE_KINDS
    total, liked = 0, 0
    for key, value in node.items():
        pair = _constant_counts(value, sentinel, like=like or (in_like and key == "A_Expr"))
        total, liked = total + pair[0], liked + pair[1]
    return total, liked

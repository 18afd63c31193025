"""Whether our filter and PostgreSQL's rendering of it mean the same (preflight)."""

from __future__ import annotations

from typing import Any

from cdc_generator.rowfilter.core import RowFilterError, parse_any


def equivalent(ours: str, stored: str) -> bool:
    """Whether a filter and PostgreSQL's own rendering of one (pg_publication_tables.rowfilter)
    mean the same, ignoring casts, parentheses and the rewrites PostgreSQL applies
    (IN -> = ANY(ARRAY[...]), LIKE -> ~~, BETWEEN -> >= AND <=)."""
    try:
        return bool(_normal(parse_any(ours)) == _normal(parse_any(stored)))
    except RowFilterError:
        return False


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

"""What a real tenant id may change in a filter written with {{CUSTOMER_ID}}."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from cdc_generator.rowfilter.core import CUSTOMER_PLACEHOLDER

_WRAP = "SELECT 1 WHERE "

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

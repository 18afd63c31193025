"""The filter of every tenant of a plan, re-printed once per id length."""

from __future__ import annotations

import json
import re
from typing import Any

from cdc_generator.rowfilter.core import CUSTOMER_PLACEHOLDER, RowFilterError, canonical

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

"""Per-tenant row filters, parsed with PostgreSQL's own grammar (pglast)."""

from __future__ import annotations


class RowFilterError(ValueError):
    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


def canonical(expression: str) -> str:
    """Parse `expression` as a WHERE clause and return it re-printed by pglast."""
    from pglast import parse_sql
    from pglast.parser import ParseError
    from pglast.stream import RawStream

    try:
        statements = parse_sql(f"SELECT 1 WHERE {expression}")
    except ParseError as exc:
        raise RowFilterError(f"not a valid SQL expression: {exc}") from None
    if len(statements) != 1:
        raise RowFilterError("a filter must be a single expression (no ';')")
    where = getattr(statements[0].stmt, "whereClause", None)
    if where is None:
        raise RowFilterError("a filter must be a boolean expression")
    return str(RawStream()(where))

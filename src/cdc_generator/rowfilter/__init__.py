"""Per-tenant row filters, parsed with PostgreSQL's own grammar (pglast).

A filter ends up inside generated SQL (`CREATE PUBLICATION ... WHERE (...)`)
and inside Debezium's snapshot SELECT, so it is never used as the user wrote
it: it is parsed, checked against an allow-list of node types, and printed
again by pglast's deparser. Only a boolean expression over the table's own
columns and constants passes: no subqueries, no parameters, no second
statement, no function outside a short list of immutable built-ins.
"""

from cdc_generator.rowfilter.compare import equivalent
from cdc_generator.rowfilter.core import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TYPES,
    CUSTOMER_PLACEHOLDER,
    MAX_LENGTH,
    RowFilterError,
    canonical,
    check_characters,
    referenced_columns,
)
from cdc_generator.rowfilter.substitution import placement_problem, substitution_problem
from cdc_generator.rowfilter.tenants import TenantFilters

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_TYPES",
    "CUSTOMER_PLACEHOLDER",
    "MAX_LENGTH",
    "RowFilterError",
    "TenantFilters",
    "canonical",
    "check_characters",
    "equivalent",
    "placement_problem",
    "referenced_columns",
    "substitution_problem",
]

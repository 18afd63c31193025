"""Catalog introspection: the one inspector, in a constant number of queries.

Everything about the tables of some schemas comes back from one catalog query,
however many tables there are (correlated sub-selects run inside the server).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

REPLICA_IDENTITY = {"d": "default", "f": "full", "i": "index", "n": "nothing"}

_TABLES_SQL = """
SELECT n.nspname,
       c.relname,
       c.relreplident,
       c.reltuples::float8,
       has_table_privilege(c.oid, 'SELECT'),
       coalesce((SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                '{}'::text[]),
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisprimary),
       (SELECT array_agg(a.attname::text ORDER BY k.ord)
          FROM pg_index i
          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = c.oid AND i.indisreplident),
       coalesce((SELECT array_agg(ARRAY[a.attname::text, format_type(a.atttypid, NULL)]
                                  ORDER BY a.attnum) FROM pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.atttypid IN ('numeric'::regtype, 'numeric[]'::regtype)
                   AND a.atttypmod = -1),
                '{}'::text[])
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND NOT c.relispartition
   AND n.nspname = ANY(%(schemas)s)
   AND (%(names)s::text[] IS NULL OR c.relname = ANY(%(names)s::text[]))
 ORDER BY n.nspname, c.relname
"""


@dataclass(frozen=True)
class TableInfo:
    schema: str
    name: str
    columns: tuple[str, ...]
    primary_key: tuple[str, ...]
    replica_identity: str  # default | full | index | nothing
    replica_index_columns: tuple[str, ...]
    estimated_rows: int | None  # None: never analyzed
    can_select: bool
    #: numeric columns without precision and scale: (column, "numeric" or "numeric[]")
    unconstrained_numeric: tuple[tuple[str, str], ...] = ()

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def identity_columns(self) -> tuple[str, ...]:
        """The columns an UPDATE/DELETE event carries in its old-row image."""
        if self.replica_identity == "full":
            return self.columns
        if self.replica_identity == "index":
            return self.replica_index_columns
        if self.replica_identity == "default":
            return self.primary_key
        return ()

    @property
    def replicable(self) -> bool:
        """Whether UPDATE and DELETE can be published (and so captured) at all."""
        return bool(self.identity_columns)


def inspect_tables(conn: psycopg.Connection[Any], schemas: Sequence[str],
                   names: Collection[str] | None = None) -> list[TableInfo]:
    """Every ordinary or partitioned table in `schemas` (only `names`, when given)."""
    rows = conn.execute(
        _TABLES_SQL,
        {"schemas": list(schemas), "names": None if names is None else sorted(names)},
    ).fetchall()
    return [
        TableInfo(
            schema=str(schema), name=str(name),
            columns=tuple(columns or ()),
            primary_key=tuple(pk or ()),
            replica_identity=REPLICA_IDENTITY.get(str(ident), str(ident)),
            replica_index_columns=tuple(ri or ()),
            estimated_rows=None if tuples is None or tuples < 0 else int(tuples),
            can_select=bool(select),
            unconstrained_numeric=tuple((str(c), str(kind)) for c, kind in free or ()),
        )
        for schema, name, ident, tuples, select, columns, pk, ri, free in rows
    ]


_SCHEMAS_SQL = """
SELECT n.nspname::text FROM pg_namespace n
 WHERE EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p'))
   AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%%'
 ORDER BY 1
"""


def schemas_with_tables(conn: psycopg.Connection[Any]) -> list[str]:
    """The database's schemas that hold tables (the system's own left out)."""
    return [str(row[0]) for row in conn.execute(_SCHEMAS_SQL).fetchall()]

"""The inspector against a real server: content, and a constant number of queries."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from cdc_generator import localpg
from cdc_generator.db.inspect import inspect_tables


class CountingConnection(psycopg.Connection[Any]):
    """A real connection that counts the statements it is asked to run."""

    queries = 0

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        type(self).queries += 1
        return super().execute(*args, **kwargs)


SCHEMA = """
CREATE SCHEMA other;
CREATE TABLE public.plain (id int PRIMARY KEY, a text, b text);
CREATE TABLE public.composite (x int, y int, z text, PRIMARY KEY (y, x));
CREATE TABLE public.nokey (a text);
CREATE TABLE public.full_ident (a text, b int);
ALTER TABLE public.full_ident REPLICA IDENTITY FULL;
CREATE TABLE public.by_index (a int NOT NULL, b int NOT NULL, c text, PRIMARY KEY (a));
CREATE UNIQUE INDEX by_index_b ON public.by_index (b);
ALTER TABLE public.by_index REPLICA IDENTITY USING INDEX by_index_b;
CREATE TABLE public.dropped (id int PRIMARY KEY, gone text, kept text);
ALTER TABLE public.dropped DROP COLUMN gone;
CREATE TABLE public.parted (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE public.parted_1 PARTITION OF public.parted FOR VALUES FROM (0) TO (10);
CREATE VIEW public.a_view AS SELECT 1 AS one;
CREATE TABLE other.elsewhere (id int PRIMARY KEY);
INSERT INTO public.plain SELECT g, 'a', 'b' FROM generate_series(1, 500) g;
ANALYZE public.plain;
"""


@pytest.fixture
def conn(pg_server: localpg.LocalPostgres, pg_db: str) -> Any:
    with pg_server.connect(pg_db) as setup:
        setup.execute(SCHEMA.encode())
    with CountingConnection.connect(pg_server.dsn(pg_db), autocommit=True) as c:
        yield c


def test_tables_keys_and_identity(conn: Any) -> None:
    tables = {t.qualified: t for t in inspect_tables(conn, ["public"])}
    assert sorted(tables) == ["public.by_index", "public.composite", "public.dropped",
                              "public.full_ident", "public.nokey", "public.parted",
                              "public.plain"]
    plain = tables["public.plain"]
    assert (plain.primary_key, plain.columns, plain.replica_identity) == (
        ("id",), ("id", "a", "b"), "default")
    assert plain.estimated_rows == 500
    assert plain.can_select
    assert plain.replicable
    assert tables["public.composite"].primary_key == ("y", "x")
    assert tables["public.nokey"].estimated_rows is None
    assert not tables["public.nokey"].replicable
    assert tables["public.full_ident"].identity_columns == ("a", "b")
    assert tables["public.by_index"].identity_columns == ("b",)
    assert tables["public.dropped"].columns == ("id", "kept")


def test_names_and_schemas_narrow_the_result(conn: Any) -> None:
    found = inspect_tables(conn, ["public", "other"], {"plain", "elsewhere"})
    assert [t.qualified for t in found] == ["other.elsewhere", "public.plain"]


def test_constant_number_of_queries(conn: Any, pg_server: localpg.LocalPostgres,
                                    pg_db: str) -> None:
    CountingConnection.queries = 0
    inspect_tables(conn, ["public"])
    few = CountingConnection.queries
    with pg_server.connect(pg_db) as setup:
        setup.execute(b"DO $$BEGIN FOR i IN 1..200 LOOP EXECUTE format("
                      b"'CREATE TABLE public.t%s (id int PRIMARY KEY, v text)', i); "
                      b"END LOOP; END$$")
    CountingConnection.queries = 0
    assert len(inspect_tables(conn, ["public"])) == 207
    assert CountingConnection.queries == few == 1

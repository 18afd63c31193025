"""Configs that pass every schema but would break or leak at run time (issue 12,
class 5): topic names Kafka takes for one, sink tables two pipelines write,
one source database read for two customers, a service served by two server
groups, a schema listed twice, row filters whose {{CUSTOMER_ID}} substitution
changes what they mean for a real customer id, control characters in filters.

Each class has a generator of colliding configs; every member must be refused
with its message, and the non-colliding neighbours must pass.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from cdc_generator.errors import Problem
from tests.hostile import FORMATS, problems, run, sample

TABLE = "    - schema: public\n      name: {name}\n      primary_key: id\n"


def write(root: Path, groups: str, services: dict[str, str], environments: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "server-groups.yaml").write_text(environments + "server_groups:\n" + groups)
    (root / "services").mkdir(exist_ok=True)
    for name, body in services.items():
        (root / "services" / f"{name}.yaml").write_text(body)
    return root


def tenant_group(name: str, service: str, customers: list[str], *, host: str = "${H}",
                 dbs: list[str] | None = None) -> str:
    dbs = dbs or [f"{service}_{c}".replace("-", "_").lower() for c in customers]
    body = "".join(f"      - name: {db}\n        customer: {json.dumps(c)}\n"
                   for c, db in zip(customers, dbs, strict=True))
    return (f"  - name: {name}\n    server_group_type: db-per-tenant\n    service: {service}\n"
            f"    server: {{type: postgres, host: {json.dumps(host)}}}\n    databases:\n{body}")


def shared_group(name: str, service: str, db: str, schemas: list[str], *,
                 isolation: str = "schema", host: str = "${H}") -> str:
    return (f"  - name: {name}\n    server_group_type: db-shared\n    service: {service}\n"
            f"    isolation: {isolation}\n"
            f"    server: {{type: postgres, host: {json.dumps(host)}}}\n"
            f"    databases:\n      - name: {db}\n        schemas: {json.dumps(schemas)}\n")


def service(name: str, group: str, tables: list[str], *, schema: str | None = "public",
            filter_: str | None = None) -> str:
    out = f"service: {name}\nserver_group: {group}\nsource:\n  tables:\n"
    for table in tables:
        out += (f"    - schema: {schema}\n" if schema else "    -") + \
            f"{'      ' if schema else ' '}name: {table}\n      primary_key: id\n"
        if filter_ is not None:
            out += f"      filter: {json.dumps(filter_)}\n"
    return out


def messages(found: list[Problem]) -> str:
    return "\n".join(p.message for p in found)


# ------------------------------------------------------------ Kafka topics

def topic_collisions() -> list[tuple[str, dict[str, str], str]]:
    """(groups, services, what) whose topic names differ only in '.' against '_'."""
    out = []
    for left, tables in (("x", ["y_t", "t"]), ("x", ["y_t", "t", "u"]), ("p", ["q_r", "r"])):
        # tenant `left` with table y_t is, to Kafka, tenant left_y with table t
        right = f"{left}_{tables[0].split('_')[0]}"
        out.append((tenant_group("g", "svc", [left, right]),
                    {"svc": service("svc", "g", tables)}, f"tenants {left}/{right}"))
    for table in ("t", "orders", "a_b"):
        # tenant 'b' of service 'a' and db-shared service 'a_b' share the prefix key
        out.append((tenant_group("g1", "a", ["b"]) + shared_group("g2", "a_b", "db2", ["public"]),
                    {"a": service("a", "g1", [table]), "a_b": service("a_b", "g2", [table],
                                                                       schema=None)},
                    f"prefix with table {table}"))
    for n in range(3):
        left, right = f"c{n}", f"c{n}_x"
        out.append((tenant_group("g", "s", [left, right]),
                    {"s": service("s", "g", [f"x_t{n}", f"t{n}"])}, f"tenants {left}/{right}"))
    return out


def test_topics_that_kafka_takes_for_one_are_refused(tmp_path: Path) -> None:
    cases = topic_collisions()
    for n, (groups, services, what) in enumerate(cases):
        found = problems(write(tmp_path / str(n), groups, services))
        assert "the same to Kafka as" in messages(found), (what, found)
        assert all(p.line > 0 for p in found), found
    assert len(cases) >= 7


def test_topics_that_differ_otherwise_pass(tmp_path: Path) -> None:
    root = write(tmp_path, tenant_group("g", "s", ["x", "xy"]),
                 {"s": service("s", "g", ["y_t", "t"])})
    assert problems(root) == []


# -------------------------------------------------------------- sink tables

WAREHOUSE = ("environments:\n  prod:\n    sink: {host: sink.example.com, database: warehouse}\n")


def sink_collisions() -> list[tuple[str, str, dict[str, str], str]]:
    """(environments, groups, services, what): two pipelines writing one table."""
    out = []
    for customer, schema in (("acme", "acme"), ("Acme", "acme"), ("acme", "ACME"),
                             ("big-co", "big_co")):
        out.append((WAREHOUSE, tenant_group("t", "billing", [customer])
                    + shared_group("s", "directory", "dir", [schema]),
                    {"billing": service("billing", "t", ["users"]),
                     "directory": service("directory", "s", ["Users"], schema=None)},
                    f"tenant {customer} vs schema {schema}"))
    # two db-shared services, column isolation, the same table in one sink database
    for a, b in (("orders", "orders"), ("orders", "ORDERS"), ("Orders", "orders")):
        out.append((WAREHOUSE, shared_group("g1", "s1", "db1", ["public"], isolation="column")
                    + shared_group("g2", "s2", "db2", ["public"], isolation="column"),
                    {"s1": service("s1", "g1", [a]), "s2": service("s2", "g2", [b])},
                    f"{a} vs {b}"))
    # one service, two environments, one literal sink host: nonprod writes prod's tables
    both = ("environments:\n  nonprod:\n    sink: {host: sink.example.com}\n"
            "  prod:\n    sink: {host: sink.example.com}\n")
    out.append((both, tenant_group("g", "s", ["acme"]), {"s": service("s", "g", ["t"])},
                "two environments, one host"))
    return out


def test_sink_tables_written_twice_are_refused(tmp_path: Path) -> None:
    cases = sink_collisions()
    for n, (envs, groups, services, what) in enumerate(cases):
        found = problems(write(tmp_path / str(n), groups, services, envs))
        assert "sink table" in messages(found), (what, found)
        assert all(p.line > 0 for p in found), found
    assert len(cases) >= 8


@pytest.mark.parametrize("environments", [
    "",  # default environments: ${POSTGRES_SINK_HOST}, one server per environment
    "environments:\n  prod:\n    sink: {host: a.example.com, database: warehouse}\n"
    "  dev:\n    sink: {host: b.example.com, database: warehouse}\n",
])
def test_sinks_on_different_servers_pass(environments: str, tmp_path: Path) -> None:
    root = write(tmp_path, tenant_group("g", "s", ["acme", "globex"]),
                 {"s": service("s", "g", ["t", "u"])}, environments)
    assert problems(root) == []


# ----------------------------------------- one database, two readers or servers

def shared_databases() -> list[tuple[str, dict[str, str], str]]:
    out = []
    for db in ("tenants_db", "shared"):
        out.append((tenant_group("g", "s", ["acme", "globex"], dbs=[db, db]),
                    {"s": service("s", "g", ["t"])}, f"one group, {db}"))
        out.append((tenant_group("g1", "s1", ["acme"], dbs=[db])
                    + tenant_group("g2", "s2", ["globex"], dbs=[db]),
                    {"s1": service("s1", "g1", ["t"]), "s2": service("s2", "g2", ["t"])},
                    f"two groups, {db}"))
        out.append((tenant_group("g1", "s1", ["acme"], dbs=[db])
                    + shared_group("g2", "s2", db, ["public"], isolation="column"),
                    {"s1": service("s1", "g1", ["t"]), "s2": service("s2", "g2", ["t"])},
                    f"a tenant and all tenants, {db}"))
    return out


def test_one_source_database_for_two_customers_is_refused(tmp_path: Path) -> None:
    cases = shared_databases()
    for n, (groups, services, what) in enumerate(cases):
        found = problems(write(tmp_path / str(n), groups, services))
        assert "another tenant's data" in "\n".join(p.hint for p in found), (what, found)
    assert len(cases) >= 6


def test_the_same_database_name_on_two_servers_passes(tmp_path: Path) -> None:
    root = write(tmp_path, tenant_group("g1", "s1", ["acme"], dbs=["db"], host="a.example.com")
                 + tenant_group("g2", "s2", ["globex"], dbs=["db"], host="b.example.com"),
                 {"s1": service("s1", "g1", ["t"]), "s2": service("s2", "g2", ["t"])})
    assert problems(root) == []


def test_one_service_in_two_server_groups_is_refused(tmp_path: Path) -> None:
    for n, other in enumerate([tenant_group("g2", "s", ["globex"]),
                               shared_group("g2", "s", "db", ["public"], isolation="column")]):
        root = write(tmp_path / str(n), tenant_group("g1", "s", ["acme"]) + other,
                     {"s": service("s", "g1", ["t"])})
        assert "served by server groups 'g1' and 'g2'" in messages(problems(root))


@pytest.mark.parametrize("schemas", [["a", "a"], ["a", "A"], ["public", "x", "public"]])
def test_a_schema_listed_twice_is_refused(schemas: list[str], tmp_path: Path) -> None:
    root = write(tmp_path, shared_group("g", "s", "db", schemas),
                 {"s": service("s", "g", ["t"], schema=None)})
    assert "is listed twice in database" in messages(problems(root))


# --------------------------------------------------------------- row filters

SAFE_FILTERS = ["owner_id = '{{CUSTOMER_ID}}'", "owner_id IN ('{{CUSTOMER_ID}}', 'shared')",
                "lower(owner_id) = lower('{{CUSTOMER_ID}}')",
                "owner_id = '{{CUSTOMER_ID}}' OR owner_id IS NULL",
                "owner_id = '{{CUSTOMER_ID}}' /* {{CUSTOMER_ID}} */"]  # a comment changes nothing
UNSAFE_FILTERS = ["owner_id = {{CUSTOMER_ID}}", "\"{{CUSTOMER_ID}}\" = 1",
                  "owner_id = 'x' -- {{CUSTOMER_ID}}", "owner_no = {{CUSTOMER_ID}}::int",
                  "owner_id = '{{CUSTOMER_ID}}' AND {{CUSTOMER_ID}} = 1"]
LIKE_FILTERS = ["owner_id LIKE '{{CUSTOMER_ID}}%'", "owner_id ILIKE '%{{CUSTOMER_ID}}'"]
CUSTOMERS = ["acme", "a", "q", "1-2", "a--b", "17", "ACME_Corp", "zqjx", "x_y_z"]


def test_filter_substitution_is_checked_with_every_real_id(tmp_path: Path) -> None:
    corpus = list(itertools.product(SAFE_FILTERS + UNSAFE_FILTERS + LIKE_FILTERS, CUSTOMERS))
    for n, (expression, customer) in enumerate(sample(corpus, 20)):
        root = write(tmp_path / str(n), tenant_group("g", "s", ["other", customer]),
                     {"s": service("s", "g", ["t"], filter_=expression)})
        found = [p for p in problems(root) if p.key_path.endswith(".filter")]
        refused = (expression in UNSAFE_FILTERS
                   or (expression in LIKE_FILTERS and "_" in customer))
        assert bool(found) == refused, (expression, customer, found)
        if refused:
            assert found[0].line > 0
    assert len(corpus) >= 100


CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\u202e",
            "\u2066"]


def test_control_characters_in_filters_are_refused(tmp_path: Path) -> None:
    corpus = [(c, at) for c in CONTROLS for at in ("start", "middle", "end")]
    for n, (char, at) in enumerate(sample(corpus, 10)):
        expression = {"start": f"{char}owner_id = 'x'", "middle": f"owner_id = 'x'{char}",
                      "end": f"owner_id = 'x' {char}; DROP TABLE t"}[at]
        root = write(tmp_path / str(n), tenant_group("g", "s", ["acme"]),
                     {"s": service("s", "g", ["t"], filter_=expression)})
        found = problems(root)
        assert "control characters" in messages(found), (repr(char), at, found)
    assert len(corpus) == 30


@pytest.mark.parametrize("fmt", FORMATS)
def test_semantic_refusals_in_every_format(fmt: str, tmp_path: Path) -> None:
    groups, services, _what = topic_collisions()[0]
    root = write(tmp_path, groups, services)
    outcome = run(root, "validate", fmt=fmt)
    outcome.assert_handled()
    assert "the same to Kafka as" in outcome.text
    want = {"text": "services/svc.yaml:", "json": '"file": "services/svc.yaml"',
            "github": "::error file=services/svc.yaml,line="}[fmt]
    assert want in outcome.text, outcome.text

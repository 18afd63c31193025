"""Hostile names and values (issue 12, class 2): every name and setting of the
config, each given hostile endings, characters and URL parts, must be refused
at its own line; hosts, ports and database names take exactly their form;
a literal secret anywhere is refused and never echoed, in any format.

The corpus is every spot of this repository's config where a name or setting is
written, times every mutation (a value's ending, its characters, URL or JDBC
parameters, userinfo). The suite runs an even sample; CDC_HOSTILE_FULL=1 all.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc_generator import names
from tests.helpers import REPO
from tests.hostile import FORMATS, FULL, located, problems, run, sample, scratch

GROUPS = "server-groups.yaml"
DIRECTORY = "services/directory.yaml"

# (file, text of the line, its value): where the config writes a name or setting
NAME_SPOTS = [
    (GROUPS, "    namespace: kafka-nonprod", "kafka-nonprod"),
    (GROUPS, "  - name: asma", "asma"),
    (GROUPS, "    service: directory", "directory"),
    (GROUPS, "      - name: adopus_db_directory_dev  # Single shared database",
     "adopus_db_directory_dev"),
    (GROUPS, "          prod: adopus_db_directory_prod", "adopus_db_directory_prod"),
    (GROUPS, "          - customer_a  # Optional: schema-based isolation", "customer_a"),
    (GROUPS, "        customer: acme", "acme"),
    (GROUPS, "      host: ${POSTGRES_ASMA_HOST}", "${POSTGRES_ASMA_HOST}"),
    (GROUPS, "      port: ${POSTGRES_ADOPUS_PORT}", "${POSTGRES_ADOPUS_PORT}"),
    (DIRECTORY, "service: directory", "directory"),
    (DIRECTORY, "server_group: asma", "asma"),
    (DIRECTORY, "    - name: organizations", "organizations"),
    (DIRECTORY, "      primary_key: code", "code"),
    (DIRECTORY, "    - schema: public", "public"),
]
SETTING_SPOTS = [(GROUPS, "      user: ${POSTGRES_ADOPUS_USER}", "${POSTGRES_ADOPUS_USER}")]
KEY_SPOTS = [(GROUPS, "  nonprod:", "nonprod")]

# refused in every value, settings included
CONTROL = ["{v}\n", "{v}\r\n", "{v}\r", "\n{v}", "{v}\t", "{v}\x00", "\x00{v}", "{v}\x07",
           "{v}\x1b[2J", "{v}\x7f", "{v}\u0085", "{v}\u2028"]
# refused in names, hosts, ports and database names
SYNTAX = ["{v} ", " {v}", "{v}?socketFactory=x", "{v}&sslmode=disable", "{v};x=1", "{v}/x",
          "{v}@evil", "u:p@{v}", "{v}:5432", "{v}'", '{v}"', "{v}\\", "{v}\u202e", "{v}\u200b",
          "{v}é", "{v}%0a", "{v}#x", "{v}=1", "{v},x", "-{v}", "{v}*"]


def _quoted(value: str) -> str:
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _cases(spots: list[tuple[str, str, str]], mutations: list[str]
           ) -> list[tuple[str, str, str, str]]:
    """(file, line, value, mutation): every mutation at every spot."""
    return [(*spot, mutation) for mutation in mutations for spot in spots]


def _mutated(root: Path, case: tuple[str, str, str, str], *, key: bool) -> tuple[Path, int]:
    file, line, value, mutation = case
    scratch(root, templates=False)
    path = root / file
    lines = path.read_text().split("\n")
    assert lines.count(line) == 1, line
    number = lines.index(line) + 1
    bad = _quoted(mutation.format(v=value))
    lines[number - 1] = (line.replace(value + ":", bad + ":", 1) if key
                         else line.replace(value, bad, 1))
    path.write_text("\n".join(lines))
    return root, number


@pytest.mark.parametrize(("spots", "mutations", "key"), [
    (NAME_SPOTS, CONTROL + SYNTAX, False),
    (SETTING_SPOTS, CONTROL, False),
    (KEY_SPOTS, CONTROL + SYNTAX, True),
], ids=["names", "settings", "keys"])
def test_every_hostile_value_is_refused_at_its_line(spots: list[tuple[str, str, str]],
                                                    mutations: list[str], key: bool,
                                                    tmp_path: Path) -> None:
    cases = _cases(spots, mutations)
    for n, case in enumerate(sample(cases, 12 if len(spots) > 1 else 6)):
        root, number = _mutated(tmp_path / f"c{n}", case, key=key)
        found = problems(root)
        assert any(p.file == case[0] and p.line == number for p in found), (case, found)
    assert len(cases) == len(spots) * len(mutations)


def test_the_corpus_counts() -> None:
    full = (len(NAME_SPOTS) * len(CONTROL + SYNTAX) + len(SETTING_SPOTS) * len(CONTROL)
            + len(KEY_SPOTS) * len(CONTROL + SYNTAX))
    assert full >= 450


# ---------------------------------------------------------------- hosts


GOOD_HOSTS = ["db", "db.example.com", "db-1.internal.", "10.0.0.1", "::1", "[::1]",
              "2001:db8::5", "[2001:db8::5]", "${PGHOST}", "db-${REGION}.example.com",
              "${A}.${B}", "x" * 63 + ".example.com"]
BAD_HOSTS = ["db?socketFactory=org.springframework.context.support.ClassPathXmlApplication",
             "db/postgres?x=1", "u:p@db", "db:5432", "db;x=y", "db..example.com", "-db",
             "db-", "db_1", "256.1.1.1", "10.0.0", "127.1", "1.2.3.4.5", "db example",
             "[::1]:5432", "[db]", "fe80::1%eth0", "::g", "${A}?x=1", "x" * 64 + ".com",
             "db.123", "${A", "$A", "db\n", "", "db%2F", "[::1", "::1]"]


@pytest.mark.parametrize("where", ["server", "sink"])
def test_hosts(where: str, tmp_path: Path) -> None:
    for n, host in enumerate(sample(GOOD_HOSTS, 4) + sample(BAD_HOSTS, 10)):
        root = scratch(tmp_path / f"h{n}", templates=False)
        text = (root / GROUPS).read_text()
        if where == "server":
            line = "      host: ${POSTGRES_ASMA_HOST}"
            text = text.replace(line, f"      host: {_quoted(host)}")
        else:
            line = "    sink_tasks_max: 2"
            text = text.replace(line, f"{line}\n    sink:\n      host: {_quoted(host)}")
        (root / GROUPS).write_text(text)
        number = text[:text.index("host: " + _quoted(host))].count("\n") + 1
        found = problems(root)
        if host in GOOD_HOSTS:
            assert found == [], (host, found)
        else:
            assert any(p.file == GROUPS and p.line == number for p in found), (host, found)
    assert len(BAD_HOSTS) >= 25


def test_host_check_agrees_with_the_schema() -> None:
    """names.host_problem alone refuses every bad host the schema lets through."""
    for host in BAD_HOSTS:
        if host and all(c.isalnum() or c in ".:[]-${}_" for c in host):
            assert names.host_problem(host) is not None or "_" in host, host
    for host in GOOD_HOSTS:
        assert names.host_problem(host) is None, host


def test_ipv6_is_bracketed_in_urls(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo")
    text = (root / GROUPS).read_text()
    text = text.replace("      host: ${POSTGRES_ASMA_HOST}", "      host: 2001:db8::5")
    text = text.replace("    sink_tasks_max: 2", "    sink_tasks_max: 2\n    sink:\n"
                        "      host: '[2001:db8::7]'\n      port: 6432\n      database: dw")
    (root / GROUPS).write_text(text)
    run(root, "generate").assert_handled(code=0)
    source = (root / "generated/pipelines/directory/prod/source-directory.yaml").read_text()
    sink = (root / "generated/pipelines/directory/prod/sink-directory.yaml").read_text()
    assert 'database.hostname: "[2001:db8::5]"' in source
    assert 'connection.url: "jdbc:postgresql://[2001:db8::7]:6432/dw"' in sink


# ---------------------------------------------------------- ports, databases

GOOD_PORTS = ["5432", "1", "65535", "${PGPORT}"]
BAD_PORTS = ["0", "65536", "-1", "017", "0o17", "0x1538", "1:30", "5_432", "'5432'", "5432.0",
             "true", "'5432?ssl=1'", "'${A}${B}'", "'${A}1'", "[5432]", "{p: 1}", "null",
             "'5432\\n'", "1e3", ".inf"]
GOOD_DATABASES = ["dw", "Dw_2", "dw$x", "_dw", "${SINK_DB}", "d" * 63]
BAD_DATABASES = ["dw?socketFactory=x", "dw/x", "dw;x=1", "dw-x", "1dw", "d" * 64, "dw\n",
                 "${D}?x", "dw x", "dw&x", "'dw'", "$dw", "${D}x", "dw@h", "dw:1"]


@pytest.mark.parametrize("what", ["port", "database"])
def test_ports_and_databases(what: str, tmp_path: Path) -> None:
    good, bad = (GOOD_PORTS, BAD_PORTS) if what == "port" else (GOOD_DATABASES, BAD_DATABASES)
    for n, value in enumerate(sample(good, 3) + sample(bad, 8)):
        root = scratch(tmp_path / f"v{n}", templates=False)
        written = value if what == "port" else _quoted(value)
        text = (root / GROUPS).read_text().replace(
            "    sink_tasks_max: 2", f"    sink_tasks_max: 2\n    sink:\n      {what}: {written}")
        (root / GROUPS).write_text(text)
        number = text.count("\n", 0, text.index(f"      {what}: {written}")) + 1
        found = problems(root)
        if value in good:
            assert found == [], (value, found)
        else:
            assert any(p.file == GROUPS and p.line == number for p in found), (value, found)


@pytest.mark.parametrize("name", ["adopus_acme-2", "adopus acme", "acme?x=1", "acme/x"])
def test_source_database_names_are_identifiers(name: str, tmp_path: Path) -> None:
    """A source database name goes into Debezium's JDBC URL: an identifier, no '-'."""
    root = scratch(tmp_path / "repo", templates=False)
    text = (root / GROUPS).read_text().replace("- name: adopus_acme", f"- name: {_quoted(name)}")
    (root / GROUPS).write_text(text)
    located(problems(root), GROUPS, "does not match the required pattern")


# ---------------------------------------------------------------- secrets

SECRET = "Zq9-s3cr3t-Vx7"
# (what, how it is written into server-groups.yaml: old line -> new line)
SECRETS = {
    "password key": ("      password: ${POSTGRES_ADOPUS_PASSWORD}", f"      password: {SECRET}"),
    "sink password": ("    sink_tasks_max: 2",
                      f"    sink_tasks_max: 2\n    sink:\n      password: {SECRET}"),
    "url in host": ("      host: ${POSTGRES_ASMA_HOST}",
                    f"      host: postgresql://admin:{SECRET}@db.example.com"),
    "userinfo in host": ("      host: ${POSTGRES_ASMA_HOST}", f"      host: admin:{SECRET}@db"),
    "password= in database": ("    sink_tasks_max: 2",
                              f"    sink_tasks_max: 2\n    sink:\n      database: "
                              f"'dw?password={SECRET}'"),
    "jdbc ;password= in user": ("      user: ${POSTGRES_ADOPUS_USER}",
                                f"      user: 'u;password={SECRET}'"),
    "token in a namespace": ("    namespace: kafka-nonprod",
                             f"    namespace: 'https://x.example/?token={SECRET}'"),
    "secret-named unknown key": ("    sink_tasks_max: 2",
                                 f"    sink_tasks_max: 2\n    api_key: {SECRET}"),
    "key holding a url": ("\n  prod:\n", f"\n  'postgres://u:{SECRET}@h/db': {{}}\n  prod:\n"),
    "password with a newline": ("      password: ${POSTGRES_ADOPUS_PASSWORD}",
                                f'      password: "{SECRET}\\n"'),
    "password as a number": ("      password: ${POSTGRES_ADOPUS_PASSWORD}",
                             "      password: 739154823"),
    "password in a tag": ("      password: ${POSTGRES_ADOPUS_PASSWORD}",
                          f"      password: !{SECRET} x"),
}


def _secret_repo(tmp_path: Path, what: str) -> Path:
    root = scratch(tmp_path / "repo")
    old, new = SECRETS[what]
    text = (root / GROUPS).read_text()
    assert text.count(old) == 1
    (root / GROUPS).write_text(text.replace(old, new))
    return root


@pytest.mark.parametrize("what", sorted(SECRETS))
def test_a_literal_secret_is_refused_and_never_echoed(what: str, tmp_path: Path) -> None:
    root = _secret_repo(tmp_path, what)
    secret = "739154823" if what == "password as a number" else SECRET
    assert secret in (root / GROUPS).read_text()
    # each secret in one format, in turn; in every format with CDC_HOSTILE_FULL=1
    for fmt in FORMATS if FULL else [FORMATS[sorted(SECRETS).index(what) % len(FORMATS)]]:
        outcome = run(root, "validate", fmt=fmt)
        outcome.assert_handled()
        assert GROUPS in outcome.text
        for part in (secret, secret[:6], secret[-6:]):
            assert part not in outcome.text, (what, fmt, outcome.text)


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_secret_in_a_file_that_is_not_yaml_is_found_and_not_echoed(fmt: str,
                                                                     tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo")
    with open(root / GROUPS, "a") as fh:
        fh.write(f"  broken: [\n    password: {SECRET}\n")
    outcome = run(root, "validate", fmt=fmt)
    outcome.assert_handled()
    assert "literal" in outcome.text
    assert SECRET not in outcome.text


def test_placeholders_in_urls_are_not_secrets(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    text = (root / GROUPS).read_text().replace(
        "    namespace: kafka-nonprod", "    namespace: kafka-nonprod\n"
        "    # postgresql://u:hunter2@h is only a comment")
    (root / GROUPS).write_text(text)
    assert problems(root) == []
    assert (REPO / GROUPS).read_text().count("${") >= 5

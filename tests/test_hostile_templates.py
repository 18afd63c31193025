"""Hostile templates (issue 12, class 1): a template in templates/ is code from a
pull request. None may reach Python internals, the environment or files outside
templates/, none may run unbounded, and each failure is a located problem at
the template (exit 1), never a crash.

The corpus: escapes towards Python internals, reads of the environment and of
files (by include, import, extends, links and odd files in templates/),
unbounded work (loops, recursion, huge numbers, strings and output, also
evaluated at compile time), broken templates, and output that is not one
KafkaConnector of the template's connector class. Each is tried as the source
template and, where it applies, from an included template.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cdc_generator import sandbox
from tests.helpers import REPO
from tests.hostile import FORMATS, run, sample, scratch

SOURCE = "templates/source-pipeline.yaml"
CANARY = "cdc-canary-7Hq2"  # an environment value no output may contain
ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ pipeline.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.environ }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ range.__self__ }}",
    "{{ source.__dataclass_fields__ }}",
    "{{ pipeline | attr('__class__') }}",
    "{{ (pipeline | attr('__reduce_ex__'))(2) }}",
    "{{ '{0.__class__.__base__}'.format(pipeline) }}",
    "{{ '%s' | format(pipeline.__init__) }}",
    "{{ source.tables.__len__() }}",
    "{% set x = source.filtered_tables.append(1) %}",
    "{% set d = {} %}{% set _ = d.update({'a': 1}) %}",
    "{% set l = [] %}{{ l.append(1) }}",
    "{{ lipsum.__globals__['os'].environ }}",
    "{{ config.items() }}",
    "{{ environ }}",
    "{{ os.environ }}",
    "{{ dict.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ pipeline.source.__setattr__('name', 'x') }}",
    "{{ [].pop() }}",
]
READS = [
    "{% include '/etc/passwd' %}",
    "{% include '../server-groups.yaml' %}",
    "{% include 'x/../../server-groups.yaml' %}",
    "{% include '/proc/self/environ' %}",
    "{% import '/proc/self/environ' as e %}",
    "{% extends '../../../../etc/passwd' %}",
    "{% include 'link-out.yaml' %}",
    "{% include 'fifo.yaml' %}",
    "{% include 'folder' %}",
    "{% include 'latin1.yaml' %}",
    "{% include 'missing.yaml' %}",
    "{% include ['/etc/passwd', '../server-groups.yaml'] %}",
    "{% from '/etc/passwd' import x %}",
    "{% include 'big.yaml' %}",
]
UNBOUNDED = [
    "{% for i in range(10**9) %}{% endfor %}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ 9**(9**9) }}",
    "{{ 10**10000 }}",
    "{{ 'a' * 10**10 }}",
    "{{ [1] * 10**9 }}",
    "{{ (10**1000) * (10**1000) * (10**1000) * (10**1000) * (10**1000) }}",
    "{{ 'x' | center(1000000000) }}",
    "{{ '%0999999999d' | format(1) }}",
    "{{ 'x' | indent(1000000000, true) }}",
    "{% set ns = namespace(s='xxxxxxxx') %}{% for i in range(40) %}"
    "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{% for i in range(100000) %}{{ 'y' * 1000000 }}{% endfor %}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{{ '{:>99999}'.format(1) * 100000 }}",
    "{{ range(100000) | join(' ' * 100000) }}",
]
BROKEN = [
    "{% if %}",
    "{{ }",
    "{% for x in y %}",
    "{{ source.nope }}",
    "{{ nope }}",
    "{{ 1 / 0 }}",
    "{{ source.name | nofilter }}",
    "{% endfor %}",
    "{{ 'a' + 1 }}",
    "{{ source.tables[99999] }}",
    "{% include 42 %}",
    "{{ (1).__x__ }}",
    "{{ int('x') }}",
]
DUPLICATED_KEY = ("apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\n"
                  "metadata: {name: {{ source.name | q }}}\nspec:\n"
                  "  class: io.debezium.connector.postgresql.PostgresConnector\n"
                  "  config:\n    slot.name: a\n    plugin.name: pgoutput\n    slot.name: b\n")
OUTPUTS = [
    "",
    "just text",
    "key: [unclosed",
    "- a\n- list",
    "apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\n---\nkind: KafkaConnector\n",
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ source.name | q }}}\n",
    "apiVersion: kafka.strimzi.io/v1\nkind: Deployment\n",
    "apiVersion: kafka.strimzi.io/v1beta2\nkind: KafkaConnector\n",
    "apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\nmetadata: {name: other}\n"
    "spec: {class: io.debezium.connector.postgresql.PostgresConnector}\n",
    "apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\nmetadata:"
    " {name: {{ source.name | q }}}\nspec: {class: io.debezium.connector.jdbc.JdbcSinkConnector}\n",
    "apiVersion: kafka.strimzi.io/v1\nkind: KafkaConnector\nkind: KafkaConnector\n",
    "apiVersion: kafka.strimzi.io/v1\nkind: !!binary S2Fma2FDb25uZWN0b3I=\n",
    "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
    "x: " + "[" * 2000 + "]" * 2000 + "\n",
    "{{ '\\x00' }}",
    DUPLICATED_KEY,
]
CORPUS = {"escape": ESCAPES, "read": READS, "unbounded": UNBOUNDED, "broken": BROKEN,
          "output": OUTPUTS}


def _layout(root: Path) -> None:
    """The odd files an include may aim at."""
    templates = root / "templates"
    outside = root.parent / "outside.yaml"
    outside.write_text("secret: from outside templates/\n")
    (templates / "link-out.yaml").symlink_to(outside)
    os.mkfifo(templates / "fifo.yaml")
    (templates / "folder").mkdir()
    (templates / "latin1.yaml").write_bytes("caf\xe9\n".encode("latin-1"))
    with open(templates / "big.yaml", "wb") as fh:
        fh.truncate(sandbox.MAX_TEMPLATE_BYTES + 1)


@pytest.fixture(autouse=True)
def _quick_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same limits, reached sooner: the suite stays fast."""
    monkeypatch.setattr(sandbox, "CPU_SECONDS", 0.1)
    monkeypatch.setattr(sandbox, "MEMORY_BYTES", 64 * 1024 * 1024)
    monkeypatch.setenv("CDC_CANARY", CANARY)


def _check(root: Path, command: str, included: bool) -> None:
    outcome = run(root, command, seconds=30)
    outcome.assert_handled()
    # an included template's failure is at it, unless only the output shows it
    assert (included and "templates/inner.yaml" in outcome.err) or \
        outcome.err.startswith(SOURCE), outcome.err
    assert CANARY not in outcome.text
    assert "root:x:0:0" not in outcome.text
    assert "from outside templates" not in outcome.text
    assert not (root / "generated").exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".generated")]


@pytest.mark.parametrize("kind", sorted(CORPUS))
def test_hostile_templates_are_located_problems(kind: str, tmp_path: Path) -> None:
    # each as the source template and (output aside, which an include cannot change)
    # from an include; the commands take turns
    corpus = [(body, included) for body in CORPUS[kind]
              for included in ((False,) if kind == "output" else (False, True))]
    for n, (body, included) in enumerate(sample(corpus, 8)):
        root = scratch(tmp_path / str(n))
        _layout(root)
        template = root / SOURCE
        if included:
            (root / "templates" / "inner.yaml").write_text(body + "\n")
            template.write_text("{% include 'inner.yaml' %}\n")
        else:
            template.write_text(body + "\n")
        _check(root, "validate" if n % 2 else "generate", included)
    assert len(corpus) >= len(CORPUS[kind])


def test_a_templates_folder_linked_out_of_the_repository_is_not_read(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo", templates=False)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "source-pipeline.yaml").write_text("{% include 'secret.txt' %}\n")
    (outside / "secret.txt").write_text("from outside templates\n")
    (root / "templates").symlink_to(outside)
    outcome = run(root, "validate")
    outcome.assert_handled()
    assert "is a symbolic link out of templates/" in outcome.err
    assert "from outside templates" not in outcome.text


def test_the_corpus_counts() -> None:
    assert sum(len(c) for c in CORPUS.values()) >= 80


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_template_error_has_file_and_line_in_every_format(fmt: str, tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo")
    lines = (root / SOURCE).read_text().splitlines()
    lines.insert(9, "    oops: {{ ''.__class__.__mro__ }}")
    (root / SOURCE).write_text("\n".join(lines) + "\n")
    outcome = run(root, "validate", fmt=fmt)
    outcome.assert_handled()
    want = {"text": f"{SOURCE}:10:1:", "json": '"line": 10',
            "github": f"::error file={SOURCE},line=10"}[fmt]
    assert want in outcome.text, outcome.text
    assert "sandbox" in outcome.text


def test_an_edited_template_still_renders(tmp_path: Path) -> None:
    """Untrusted (not the built-in text) but well-behaved: generated as ever."""
    root = scratch(tmp_path / "repo")
    text = (root / SOURCE).read_text()
    (root / SOURCE).write_text(text.replace("  tasksMax: 1", "  # ours\n  tasksMax: 1"))
    run(root, "generate").assert_handled(code=0)
    produced = root / "generated/pipelines/directory/prod/source-directory.yaml"
    assert "  # ours\n" in produced.read_text()
    expected = (REPO / "generated/pipelines/directory/prod/source-directory.yaml").read_text()
    assert produced.read_text().replace("  # ours\n", "") == expected


def test_the_memory_limit_is_headroom_over_what_the_process_uses(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Measured at each render: a long-lived process that grew in between must
    still have the headroom, and no more."""
    # the CPU limit is another test's: filling a GiB may take more than 2 s of CPU
    # on a loaded machine (it failed so once, with RenderTimeout)
    monkeypatch.setattr(sandbox, "CPU_SECONDS", 60.0)
    headroom = sandbox.MEMORY_BYTES
    with sandbox.bounded():
        assert len(bytearray(headroom // 2)) == headroom // 2
    ballast = bytearray(2 * headroom)  # what the process took on since
    with sandbox.bounded():
        assert len(bytearray(headroom // 2)) == headroom // 2
    with pytest.raises(MemoryError), sandbox.bounded():
        bytearray(2 * headroom)
    assert len(ballast) == 2 * headroom


def test_the_built_in_templates_are_trusted(tmp_path: Path) -> None:
    from cdc_generator.render import Renderer

    for with_copy in (True, False):
        root = scratch(tmp_path / str(with_copy), templates=with_copy)
        renderer = Renderer(root)
        renderer.load_templates()
        assert renderer.loader.trusted == {"source-pipeline.yaml": True,
                                           "sink-pipeline.yaml": True}
    (root / "templates").mkdir()
    (root / SOURCE).write_text((REPO / SOURCE).read_text() + "\n")
    renderer = Renderer(root)
    renderer.load_templates()
    assert renderer.loader.trusted["source-pipeline.yaml"] is False


def test_a_key_given_twice_is_a_located_problem(tmp_path: Path) -> None:
    root = scratch(tmp_path / "repo")
    (root / SOURCE).write_text(DUPLICATED_KEY)
    outcome = run(root, "generate")
    outcome.assert_handled()
    assert "has key 'slot.name' twice (in spec.config)" in outcome.err, outcome.err
    assert outcome.err.startswith(f"{SOURCE}:7:"), outcome.err  # the first slot.name
    assert not (root / "generated").exists()


def test_the_generated_manifests_give_each_key_once() -> None:
    """The built-in templates are trusted (not checked at each render): their output
    is checked here."""
    from cdc_generator.render import (
        CONNECTOR_CLASS,
        SINK_TEMPLATE,
        SOURCE_TEMPLATE,
        manifest_problem,
    )

    files = sorted((REPO / "generated" / "pipelines").rglob("*.yaml"))
    checked = 0
    for path in files:
        if path.name == "kustomization.yaml":
            continue
        template = SOURCE_TEMPLATE if path.name.startswith("source-") else SINK_TEMPLATE
        assert manifest_problem(path.read_text(), CONNECTOR_CLASS[template],
                                path.stem) is None, path
        checked += 1
    assert checked >= 16

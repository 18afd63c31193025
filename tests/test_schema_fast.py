"""The compiled schema validators (config/compiled/) are fresh and never wave
through what jsonschema rejects.

`schema.validate` asks the compiled validator first and jsonschema only when it
says "not valid", so its answer equals jsonschema's exactly when the compiled
one rejects everything jsonschema rejects. This holds them to it over every
config in the repository and the tests, and over thousands of mutations of
them: each key removed, an unknown key added, each value replaced by values of
other types and shapes.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from cdc_generator.config import load, schema
from cdc_generator.config.load import Document

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "compile_schemas.py"

REPLACEMENTS: list[Any] = [
    None, True, 0, -1, 70000, 1.5, "", "x", "Bad Name!", "a\n", "UPPER", "9lives",
    "${VAR}", "db$1", "-dash", "a" * 70, [], ["x"], ["x", "x"], [{}], {}, {"k": "v"},
]


def _configs() -> Iterator[tuple[str, str, Any]]:
    """(label, schema name, data) of every config file we have."""
    roots = [REPO, *sorted((REPO / "tests" / "golden").glob("*/input")),
             *sorted(p for p in (REPO / "tests" / "negative").iterdir() if p.is_dir())]
    for root in roots:
        files = [(root / "server-groups.yaml", schema.SERVER_GROUPS_SCHEMA)]
        files += [(f, schema.SERVICE_SCHEMA) for f in sorted((root / "services").glob("*.yaml"))]
        for file, name in files:
            try:  # our loader: an alias bomb among the negative cases stays a bomb to PyYAML
                data = load.parse_document(file.read_text("utf-8"), str(file)).data
            except (OSError, UnicodeDecodeError, load.YamlLoadError):
                continue  # the negative cases of unreadable YAML test the loader
            yield f"{file.relative_to(REPO)}", name, data


def _mutations(data: Any) -> Iterator[Any]:
    """`data` changed in one place each: keys removed and added, values replaced."""
    for path in _paths(data):
        parent = _at(data, path[:-1]) if path else None
        if path and isinstance(parent, dict):
            removed = copy.deepcopy(data)
            del _at(removed, path[:-1])[path[-1]]
            yield removed
        for value in REPLACEMENTS:
            if path:
                changed = copy.deepcopy(data)
                _at(changed, path[:-1])[path[-1]] = value
                yield changed
        node = _at(data, path)
        if isinstance(node, dict):
            added = copy.deepcopy(data)
            _at(added, path)["unknown_key"] = "x"
            yield added
        if isinstance(node, list) and node:
            doubled = copy.deepcopy(data)
            _at(doubled, path).append(copy.deepcopy(node[0]))
            yield doubled


def _paths(data: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _paths(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _paths(value, (*path, i))


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        data = data[key]
    return data


def _jsonschema_valid(data: Any, name: str) -> bool:
    """jsonschema's verdict, with `$` read as ECMA-262 (and fastjsonschema) read it:
    the end of the text, not also before a final newline."""
    return bool(schema._validator(name).is_valid(data))


CONFIGS = list(_configs())


# the negative cases whose config breaks a schema (the rest break semantic checks)
SCHEMA_BREAKING = {
    "tests/negative/empty-tables/services/directory.yaml",
    "tests/negative/missing-group-name/server-groups.yaml",
    "tests/negative/unknown-group-type/server-groups.yaml",
    "tests/negative/unknown-key/server-groups.yaml",
    "tests/negative/wrong-type/services/directory.yaml",
}


def test_the_compiled_verdict_on_known_configs() -> None:
    """The compiled validator passes this repository's and the golden cases' config
    and refuses the schema-breaking negative cases (so the corpus has both)."""
    verdicts = {label: schema.fast_valid(data, name) for label, name, data in CONFIGS}
    for label in SCHEMA_BREAKING:
        assert verdicts[label] is False, label
    valid = [label for label in verdicts if not label.startswith("tests/negative/")]
    assert "server-groups.yaml" in valid
    assert [label for label in valid if not verdicts[label]] == []


@pytest.mark.parametrize(("label", "name", "data"), CONFIGS, ids=[c[0] for c in CONFIGS])
def test_same_verdict_on_every_config_and_its_mutations(label: str, name: str,
                                                        data: Any) -> None:
    checked = stricter = 0
    for candidate in [data, *_mutations(data)]:
        slow = _jsonschema_valid(candidate, name)
        fast = schema.fast_valid(candidate, schema_name=name)
        assert slow or not fast, f"{label}: compiled validator accepts what jsonschema " \
                                 f"rejects: {candidate!r}"
        stricter += fast != slow
        checked += 1
    assert checked > 1 or not isinstance(data, dict)
    # both read `$` as the end of the text: the same verdict everywhere
    assert stricter == 0, f"{label}: {stricter} of {checked} differ"


def test_a_trailing_newline_fails_every_pattern() -> None:
    """Python's `$` matches before a final newline; ours must not, in either validator."""
    plain = Draft202012Validator(schema.schema(schema.SERVICE_SCHEMA))
    data = {"service": "a\n", "server_group": "g",
            "source": {"tables": [{"name": "t", "primary_key": "id"}]}}
    assert plain.is_valid(data)  # what the library alone would let through
    assert not schema.fast_valid(data, schema.SERVICE_SCHEMA)
    assert not _jsonschema_valid(data, schema.SERVICE_SCHEMA)


def test_validate_reports_exactly_what_jsonschema_finds() -> None:
    for label, name, data in CONFIGS:
        for candidate in [data, *list(_mutations(data))[:50]]:
            doc = Document(label, None)
            doc.data = candidate
            slow = not _jsonschema_valid(candidate, name)
            assert bool(schema.validate(doc, name)) == slow, (label, candidate)


def test_compiled_validators_are_fresh() -> None:
    """scripts/compile_schemas.py --check: a schema edited without re-compiling fails."""
    if importlib.util.find_spec("fastjsonschema") is None:
        pytest.fail("fastjsonschema (a dev dependency) is needed: pip install -e .[dev]")
    spec = importlib.util.spec_from_file_location("compile_schemas", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--check"]) == 0, "run: python scripts/compile_schemas.py"

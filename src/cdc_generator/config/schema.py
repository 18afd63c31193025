"""JSON Schema validation of the config, each error mapped back to file:line:col.

Two validators give one verdict. The compiled one (config/compiled/, made from
the same schemas by scripts/compile_schemas.py) only says "valid" or "not", and
needs no schema library; jsonschema runs only when it says "not", to find every
problem with its place and a hint. tests/test_schema_fast.py holds the two to
the same verdicts, so the compiled one never waves through what jsonschema
would reject.
"""

from __future__ import annotations

import difflib
import importlib
import json
import re
from collections.abc import Callable, Collection, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from cdc_generator.config.load import Document, KeyPath
from cdc_generator.errors import Problem

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

SERVER_GROUPS_SCHEMA = "server-groups.schema.json"
SERVICE_SCHEMA = "service.schema.json"
# keys whose values are never repeated in a message
SECRET_KEYS = frozenset({"password"})
SECRET_HINT = ("write a placeholder such as ${POSTGRES_PASSWORD}; "
               "Kafka Connect resolves it at run time")
# schema file -> module of config/compiled/ (scripts/compile_schemas.py writes them)
COMPILED = {SERVER_GROUPS_SCHEMA: "server_groups", SERVICE_SCHEMA: "service"}


@cache
def schema(name: str) -> dict[str, Any]:
    from importlib import resources  # only the explaining path reads the schemas

    text = resources.files("cdc_generator").joinpath("schemas", name).read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _ecma(pattern: str) -> re.Pattern[str]:
    """`pattern` with ECMA-262's meaning of `$`, the end of the string: Python's `$`
    also matches before a final newline, which would let "name\\n" through.
    (fastjsonschema, behind the compiled validators, does the same.)"""
    return re.compile(re.sub(r"(?<!\\)\$", r"\\Z", pattern))


def _pattern(validator: Any, patrn: str, instance: Any,
             schema: dict[str, Any]) -> Iterator[ValidationError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not _ecma(patrn).search(instance):
        yield ValidationError(f"{instance!r} does not match {patrn!r}")


@cache
def _validator(name: str) -> Draft202012Validator:
    from jsonschema import Draft202012Validator, validators

    strict = validators.extend(  # type: ignore[no-untyped-call]
        Draft202012Validator, {"pattern": _pattern})
    validator: Draft202012Validator = strict(schema(name))
    return validator


@cache
def compiled(name: str) -> Callable[[Any], object]:
    """The compiled validator of schema `name`: raises at the first violation."""
    module = importlib.import_module(f"cdc_generator.config.compiled.{COMPILED[name]}")
    check: Callable[[Any], object] = module.validate
    return check


def fast_valid(data: Any, schema_name: str) -> bool:
    """The compiled validator's verdict."""
    try:
        compiled(schema_name)(data)
    except Exception:  # any complaint, or a crash on odd data: ask jsonschema
        return False
    return True


def validate(doc: Document, schema_name: str,
             secrets: Collection[KeyPath] = ()) -> list[Problem]:
    """Every schema violation in `doc`, located and explained; values at the key
    paths `secrets` (and under password keys) are never repeated."""
    return [problem for _path, _validator, problem in errors(doc, schema_name, secrets)
            if problem is not None]


def errors(doc: Document, schema_name: str, secrets: Collection[KeyPath] = ()
           ) -> list[tuple[KeyPath, str, Problem | None]]:
    """`validate`'s problems, each with the key path of the value jsonschema
    refused and the keyword it failed (to keep what is right for later checks);
    None where another problem of the list already says it."""
    if fast_valid(doc.data, schema_name):
        return []
    found: list[tuple[KeyPath, str, Problem | None]] = []
    for raw in _validator(schema_name).iter_errors(doc.data):
        error = _most_specific(raw)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            found += [(_path(raw), str(raw.validator), _unknown_key(doc, error, key, schema_name))
                      for key in _extra_keys(error)]
        elif _misspelt_required(error):
            # the unknown key's problem says it; the entry still lacks the key
            found.append((_path(raw), str(raw.validator), None))
        else:
            found.append((_path(raw), str(raw.validator),
                          _to_problem(doc, error, schema_name, secrets)))
    if not found:  # the compiled validator refused what jsonschema accepts: never wave through
        found = [((), "", doc.problem((), "the file does not satisfy its schema",
                                      f"see schemas/{schema_name}"))]
    return found


def _allowed(error: ValidationError) -> list[str]:
    properties = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
    return sorted(properties)


def _mapping(error: ValidationError) -> dict[str, Any]:
    instance = error.instance
    return instance if isinstance(instance, dict) else {}


def _extra_keys(error: ValidationError) -> list[str]:
    return [k for k in _mapping(error) if k not in _allowed(error)]


def _misspelt_required(error: ValidationError) -> bool:
    """A missing required key that an unknown key beside it is a misspelling of:
    one mistake, reported once, as the unknown key."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return False
    missing = _quoted_name(str(error.message)).strip("'\"")
    return bool(difflib.get_close_matches(missing, _extra_keys(error), n=1))


def _unknown_key(doc: Document, error: ValidationError, key: str,
                 schema_name: str) -> Problem:
    allowed = _allowed(error)
    required = error.schema.get("required", []) if isinstance(error.schema, dict) else []
    close = difflib.get_close_matches(key, allowed, n=1)
    if close and close[0] in required and close[0] not in _mapping(error):
        message = f"unknown key {key!r}, and the required key {close[0]!r} is missing"
        hint = f"rename {key!r} to {close[0]!r}"
    else:
        message = f"unknown key {key!r}"
        hint = f"did you mean {close[0]!r}? " if close else ""
        hint += f"allowed keys: {', '.join(allowed)}"
    return doc.problem((*error.absolute_path, key), message, hint)


def _most_specific(error: ValidationError) -> ValidationError:
    # oneOf/anyOf report "is not valid under any of the given schemas": the
    # branch that came closest says more, unless the schema describes the choice.
    from jsonschema.exceptions import best_match

    if _described_choice(error):
        return error
    if error.context:
        inner = best_match(error.context)
        if inner is not None:
            return _most_specific(inner)
    return error


def _path(error: ValidationError) -> KeyPath:
    """Where the refused value is: a refused key name (propertyNames) is reported
    at the key, not at the mapping holding it."""
    path: KeyPath = tuple(error.absolute_path)
    if "propertyNames" in error.schema_path and isinstance(error.instance, str):
        path = (*path, error.instance)
    return path


def _to_problem(doc: Document, error: ValidationError, schema_name: str,
                secrets: Collection[KeyPath] = ()) -> Problem:
    path = _path(error)
    validator = error.validator
    instance = error.instance
    message, hint = error.message, ""
    secret = (any(str(key).lower() in SECRET_KEYS for key in path)
              or any(path[:len(s)] == s for s in secrets))
    # jsonschema's own messages quote the whole value, secrets below it included
    holds_secret = any(s[:len(path)] == path for s in secrets)
    if secret:  # whatever is wrong with a secret, its value is not repeated
        instance = _Withheld(instance)
    if validator == "required":
        message = f"missing required key {_quoted_name(str(error.message))}"
    elif validator == "type":
        message = f"expected {_type_name(error.validator_value)}, got {_describe(instance)}"
    elif validator in {"enum", "const"}:
        raw_values: Any = error.validator_value
        values = list(raw_values) if validator == "enum" else [raw_values]
        message = f"{_describe(instance)} is not allowed"
        hint = "use one of: " + ", ".join(str(v) for v in values)
    elif validator == "pattern":
        message = (f"{_describe(instance)} does not match the required pattern "
                   f"{error.validator_value}")
        hint = _pattern_hint(str(error.validator_value))
    elif _described_choice(error) and isinstance(error.schema, dict):
        wanted = str(error.schema.get("description", "")).rstrip(".")
        message = f"expected {wanted[:1].lower()}{wanted[1:]}, got {_describe(instance)}"
    elif validator == "minItems" and instance == []:
        message = "must not be empty"
    elif validator == "propertyNames":
        message = (f"{_describe(instance)} is not a valid name here"
                   if secret else f"{error.instance!r} is not a valid name here: {error.message}")
    if secret or holds_secret:
        if message == error.message:  # jsonschema's own words may quote the value
            message = f"{_describe(instance)} is not valid here ({validator})"
        hint = hint or (SECRET_HINT if secret else "")
    return doc.problem(path, message, hint or f"see schemas/{schema_name}")


def _described_choice(error: ValidationError) -> bool:
    return (error.validator in {"oneOf", "anyOf"} and isinstance(error.schema, dict)
            and "description" in error.schema)


def _quoted_name(message: str) -> str:
    # jsonschema says "'name' is a required property"
    return message.split(" is a required property", maxsplit=1)[0]


def _type_name(value: Any) -> str:
    names = {"object": "a mapping", "array": "a list", "string": "a string",
             "integer": "an integer", "boolean": "true or false", "number": "a number"}
    if isinstance(value, list):
        return " or ".join(names.get(str(v), str(v)) for v in value)
    return names.get(str(value), str(value))


class _Withheld:
    """A value under a secret key: described by its kind only."""

    def __init__(self, value: Any) -> None:
        self.value = value


def _describe(value: Any) -> str:
    if isinstance(value, _Withheld):
        kind = _describe(value.value) if isinstance(value.value, dict | list | None) else (
            "true or false" if isinstance(value.value, bool)
            else "a number" if isinstance(value.value, int | float)
            else "a string" if isinstance(value.value, str) else "a value")
        return f"{kind} (value not shown: it is a secret)"
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"number {value}"
    return repr(value)


_PATTERN_HINTS = {
    "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$":
        "control characters (a newline, a tab, NUL) are not allowed in a value",
    "^\\$\\{[A-Za-z_][A-Za-z0-9_]*\\}$": "write a ${VAR} placeholder",
    "^([A-Za-z0-9.:\\[\\]-]|\\$\\{[A-Za-z_][A-Za-z0-9_]*\\})+$":
        "write a host name (letters, digits, '-' and '.'), an IP address or a ${VAR} "
        "placeholder; no user, password, port or parameters",
}


def _pattern_hint(pattern: str) -> str:
    if pattern in _PATTERN_HINTS:
        return _PATTERN_HINTS[pattern]
    if pattern.startswith("^[a-z0-9]([-a-z0-9]"):
        return "use lower-case letters, digits and '-' (a DNS-1123 label)"
    if pattern.startswith("^[A-Za-z_][A-Za-z0-9_]"):
        return "use a plain SQL identifier: letters, digits and '_', not starting with a digit"
    return "use letters, digits, '_', '-' and '.'"

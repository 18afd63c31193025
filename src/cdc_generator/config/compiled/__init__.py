"""Validators compiled from schemas/*.json by scripts/compile_schemas.py (fastjsonschema).

They only decide "valid or not", without importing any schema library, so a
valid configuration costs almost nothing to check. config/schema.py asks
jsonschema for the full, located problems when they say "not valid".
"""

from __future__ import annotations

from typing import Any


class JsonSchemaValueException(ValueError):  # the name the compiled code uses
    """Raised by the compiled code at the first violation it meets."""

    def __init__(self, message: str, value: Any = None, name: str | None = None,
                 definition: Any = None, rule: str | None = None) -> None:
        super().__init__(message)
        self.message, self.value, self.name = message, value, name
        self.definition, self.rule = definition, rule


JsonSchemaValuesException = JsonSchemaValueException

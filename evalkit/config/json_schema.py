"""JSON Schema of evalkit's YAML files, generated from the pydantic models that validate them.

``evalkit schema config`` and ``evalkit schema task`` print it; the committed copies in ``docs/schema/`` are what
an editor's YAML language server reads (``# yaml-language-server: $schema=...`` on a file's first line).

Pydantic's own schema describes a field's type; where a validator accepts or refuses more than the type says,
the field carries ``json_schema_extra`` beside that validator (a plain-string shorthand, a pattern, unique
items), so the two are read and changed together. One rule holds for every model and lives here: an arm or
kind is told apart by its discriminator key, which must be written even where the field has a default.
What no schema can say (rules across fields, files on disk, limits of an installed library) stays with the
validator; ``tests/config/test_json_schema.py`` lists those cases.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

# pydantic writes draft 2020-12 (``$defs``); the dialect is stated so a validator never has to guess
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of the YAML file ``model`` validates (draft 2020-12, with ``$schema`` stated)."""
    schema = model.model_json_schema(mode="validation")
    _require_discriminators(schema)
    _close_pattern_keys(schema)
    return {"$schema": SCHEMA_DIALECT, **schema}


def schema_text(model: type[BaseModel]) -> str:
    """``json_schema(model)`` as the text committed in ``docs/schema/`` (indented, one trailing newline)."""
    return json.dumps(json_schema(model), indent=2, ensure_ascii=False) + "\n"


def string_items(string_schema: dict[str, Any], unique: bool = False) -> Callable[[dict[str, Any]], None]:
    """``json_schema_extra`` of a list whose ``mode="before"`` validator turns a plain-string entry into a
    mapping (``- smollm2-135m-instruct`` is ``- {name: smollm2-135m-instruct}``): each item is either.

    ``unique``: a validator refuses repeats (the schema can refuse items written the same way twice).
    """

    def extend(schema: dict[str, Any]) -> None:
        schema["items"] = {"anyOf": [string_schema, schema["items"]]}
        if unique:
            schema["uniqueItems"] = True

    return extend


def _require_discriminators(schema: dict[str, Any]) -> None:
    """Mark each discriminated union's key required in every variant.

    Pydantic picks the variant by that key before any default applies, so ``{name: top4, top_k: 4}`` without
    ``arm:`` is refused; its schema, though, lists ``arm`` as optional where the field has a default.
    """
    definitions = schema.get("$defs", {})
    for node in _nodes(schema):
        key = (node.get("discriminator") or {}).get("propertyName")
        for variant in node.get("oneOf", []) if key else []:
            target = definitions[variant["$ref"].rsplit("/", 1)[-1]]
            if key not in target.get("required", []):
                target["required"] = [key, *target.get("required", [])]


def _close_pattern_keys(schema: dict[str, Any]) -> None:
    """Turn a mapping's one ``patternProperties`` into ``propertyNames`` plus ``additionalProperties``.

    Pydantic writes a ``dict`` whose keys have a pattern as ``patternProperties``, which constrains only keys that
    match it: ``needle_variants: {"": 0}`` (a key outside the pattern, a value of any type) would pass the schema
    while the validator refuses both. Every key must match and every value fit, as the validator says.
    """
    for node in _nodes(schema):
        patterns = node.get("patternProperties")
        if not isinstance(patterns, dict) or len(patterns) != 1 or "additionalProperties" in node:
            continue
        (pattern, values), = patterns.items()
        node.pop("patternProperties")
        node["propertyNames"] = {**node.get("propertyNames", {}), "pattern": pattern}
        node["additionalProperties"] = values


def _nodes(value: Any) -> list[dict[str, Any]]:
    """Every mapping inside ``value`` (itself included), depth first."""
    found: list[dict[str, Any]] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            found.append(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found

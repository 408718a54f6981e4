"""Reading YAML files for configs and tasks: ``safe_load`` semantics, one-line errors, no repeated keys."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml_mapping(path: str | Path, error: type[Exception], keys_hint: str) -> dict[str, Any]:
    """``yaml.safe_load`` a file whose top level must be a mapping; raise ``error`` with a one-line fix."""
    label = str(path)
    file = Path(path)
    if not file.exists():
        raise error(f"{label}: file not found; check the path (relative paths start at {Path.cwd()})")
    if not file.is_file():
        raise error(f"{label}: not a file; give the path of a .yaml file")
    try:
        data = _safe_load_unique_keys(file.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise error(f"{label}: {exc}; keep one of them (YAML would silently use the last)") from None
    except yaml.YAMLError as exc:
        raise error(f"{label}: {yaml_problem(exc)}; fix the YAML syntax there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}: cannot read the file ({exc}); check its permissions and encoding (UTF-8)") from None
    if not isinstance(data, dict):
        # the hint names the keys a user most needs; unknown keys are caught later by the model
        found = "an empty file" if data is None else f"a {_yaml_kind(data)}"
        raise error(
            f"{label}: top level: expected a mapping of keys ({keys_hint}), got {found}; write key: value pairs"
        )
    return data


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (a typo that plain YAML resolves silently: the last one wins)."""


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, never Python objects) that refuses repeated keys."""


def _construct_unique_mapping(loader: _UniqueKeySafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            continue  # unhashable or odd keys: the schema refuses them later with a clearer message
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise DuplicateKeyError(f"line {line}: key {key!r} appears twice (first on line {first_line[key]})")
        first_line[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeySafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _safe_load_unique_keys(text: str) -> Any:
    """``yaml.safe_load`` that also refuses a key written twice in one mapping."""
    loader = _UniqueKeySafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "malformed YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(exc, yaml.constructor.ConstructorError):
        # e.g. !!python/object: safe_load builds plain data only and never runs code a file names
        return f"{where}invalid YAML ({problem}; tags that build Python objects are refused, write plain values)"
    return f"{where}invalid YAML ({problem})"


def _yaml_kind(data: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(data), "scalar")

"""Reading YAML files for configs and tasks: ``safe_load`` semantics, one-line errors, no repeated keys."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import yaml

# deeper nesting is no real config; PyYAML and pydantic recurse per level (RecursionError near 300-500)
MAX_YAML_DEPTH = 32
# values a file may hold once its aliases are expanded: far above any real config or task (a 1,001-depth
# grid is ~1,000), far below an alias bomb (nine anchors of nine references each: 9**9 = 387 million)
MAX_YAML_VALUES = 100_000


def read_yaml_mapping(path: str | Path, error: type[Exception], keys_hint: str) -> dict[str, Any]:
    """``yaml.safe_load`` a file whose top level must be a mapping; raise ``error`` with a one-line fix."""
    label = str(path)
    file = Path(path)
    problem = path_problem(file)
    if problem == "file not found":
        raise error(f"{label}: file not found; check the path (relative paths start at {Path.cwd()})")
    if problem is not None:
        raise error(f"{label}: {problem}; give the path of a .yaml file")
    try:
        data = safe_load_text(file.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise error(f"{label}: {exc}; keep one of them (YAML would silently use the last)") from None
    except NestingError as exc:
        raise error(f"{label}: {exc}; write a flatter structure") from None
    except ExpansionError as exc:
        raise error(f"{label}: {exc}; write the values out instead of repeating anchors") from None
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


def path_problem(path: Path) -> str | None:
    """Why ``path`` is not a readable regular file (None when it is one), in words for an error.

    Checked before opening, so a FIFO or ``/dev/zero`` is refused instead of blocking or reading forever.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symbolic link loop (the link points back at itself)"
        if os.path.islink(path):
            return f"broken symbolic link (it points to {os.readlink(path)}, which does not exist)"
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return "file not found"
        return f"cannot read it ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    kind = "named pipe (FIFO)" if stat.S_ISFIFO(mode) else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) \
        else "socket" if stat.S_ISSOCK(mode) else "special file"
    return f"is a {kind}, not a regular file"


def safe_load_text(text: str) -> Any:
    """``yaml.safe_load`` of ``text`` refusing repeated keys and nesting deeper than ``MAX_YAML_DEPTH``."""
    try:
        data = _safe_load_unique_keys(text)
    except RecursionError:
        raise NestingError(f"nested more than {MAX_YAML_DEPTH} levels deep") from None
    return check_depth(data)


def check_depth(data: Any) -> Any:
    """``data`` unchanged; ``NestingError`` when its lists and mappings nest deeper than ``MAX_YAML_DEPTH``."""
    if _depth(data) > MAX_YAML_DEPTH:
        raise NestingError(f"nested more than {MAX_YAML_DEPTH} levels deep")
    return data


def _depth(data: Any, level: int = 0) -> int:
    """Nesting depth of lists and mappings, stopping just past the limit (so it never recurses far)."""
    if level > MAX_YAML_DEPTH or not isinstance(data, (dict, list)):
        return level
    children = data.values() if isinstance(data, dict) else data
    return max((_depth(child, level + 1) for child in children), default=level + 1)


class NestingError(yaml.YAMLError):
    """YAML nested deeper than any config needs (and deep enough to exhaust Python's recursion limit)."""


class ExpansionError(yaml.YAMLError):
    """YAML whose aliases (``*name``) expand to more values than ``MAX_YAML_VALUES`` (an "alias bomb")."""


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (a typo that plain YAML resolves silently: the last one wins)."""


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, never Python objects) that refuses repeated keys.

    It also measures the composed document before building it: aliases share one node, so a few lines can
    stand for millions of values that every later walk (depth check, validation) would visit one by one.
    """

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node, 0, {})
        return node


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


def _expanded_size(node: yaml.Node, level: int, sizes: dict[int, int]) -> int:
    """Values under ``node`` with every alias expanded; refuses past ``MAX_YAML_DEPTH`` or ``MAX_YAML_VALUES``.

    ``sizes`` remembers each node already measured (by id), so a shared node costs one visit, not one per use.
    """
    if id(node) in sizes:
        return sizes[id(node)]
    if level > MAX_YAML_DEPTH:
        raise NestingError(f"nested more than {MAX_YAML_DEPTH} levels deep")
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, level + 1, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(key, level + 1, sizes) + _expanded_size(value, level + 1, sizes)
                    for key, value in node.value)
    if size > MAX_YAML_VALUES:
        line = node.start_mark.line + 1
        raise ExpansionError(f"line {line}: its aliases (*name) expand to more than {MAX_YAML_VALUES:,} values")
    sizes[id(node)] = size
    return size


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

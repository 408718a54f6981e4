"""Pydantic validation errors turned into one line: ``FILE: FIELD: what is wrong; how to fix``."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ValidationError

from evalkit.errors import FieldError

def describe_validation_error(
    label: str, exc: ValidationError, root: type[BaseModel], set_paths: Sequence[str] = ()
) -> str:
    """Turn a pydantic ``ValidationError`` into ``LABEL: FIELD: what is wrong; how to fix``.

    Only the first error is spelled out; ``(and N more)`` counts the rest. ``set_paths`` are
    fields given by ``--set``: an error inside one says so.
    """
    errors = exc.errors(include_url=False)
    # an unknown key first: a misspelt key (`ѕamples` with a Cyrillic s) also makes the real one "missing"
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = tuple(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):  # a whole-model check that names the field it is about
        loc = (*loc, cause.field)
    field, parent, annotation, meta = _walk(root, loc)
    field, text = _explain(first, field, parent, annotation, meta)
    if any(field == p or field.startswith(p + ".") or field.startswith(p + "[") for p in set_paths):
        field += " (from --set)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{label}: {field}: {text}{more}"


def _walk(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[str, Any, Any, list[Any]]:
    """Follow a pydantic error location through the model types.

    Returns the ``a[0].b`` path, the model holding the last key, the annotation there and its
    constraint metadata (``annotated_types.Ge`` ...).
    """
    shown = ""
    parent: Any = root
    annotation: Any = root
    meta: list[Any] = []
    for part in loc:
        annotation = _strip_annotated(annotation)
        if isinstance(part, int):
            shown += f"[{part}]"
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
            meta = _annotated_metadata(annotation)
            continue
        member = _union_member(annotation, part)
        if member is not None:  # tagged unions put the tag into the location; the user never wrote it
            annotation = member
            continue
        info = annotation.model_fields.get(part) if _is_model(annotation) else None
        parent = annotation if _is_model(annotation) else None
        annotation, meta = (info.annotation, list(info.metadata)) if info is not None else (None, [])
        shown += f".{part}" if shown else part
    return shown or "top level", parent, _strip_annotated(annotation), meta


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _annotated_metadata(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is not Annotated:
        return []
    meta: list[Any] = []
    for item in typing.get_args(annotation)[1:]:
        meta.extend(getattr(item, "metadata", [item]))  # a Field(...) inside Annotated keeps its own list
    return meta


def _strip_annotated(annotation: Any) -> Any:
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        # an optional field (`X | None`) is described as X: the error is about the value given
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
            continue
        return annotation


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    args = [_strip_annotated(a) for a in typing.get_args(annotation)]
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _union_member(annotation: Any, tag: str) -> type[BaseModel] | None:
    for member in _union_members(annotation):
        for info in member.model_fields.values():
            if typing.get_origin(info.annotation) is Literal and tag in typing.get_args(info.annotation):
                return member
    return None


def _union_tags(annotation: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for member in _union_members(annotation):
        info = member.model_fields.get(discriminator)
        if info is not None and typing.get_origin(info.annotation) is Literal:
            tags.extend(str(t) for t in typing.get_args(info.annotation))
    return tags


_KIND_HINTS = {
    "int": ("is not a whole number", "write an integer such as 3"),
    "float": ("is not a number", "write a number such as 0.5"),
    "bool": ("is not true or false", "write true or false"),
    "string": ("is not text", "write text (quote it if YAML reads it as something else)"),
    "list": ("is not a list", "write a YAML list such as [a, b]"),
    "dict": ("is not a mapping", "write key: value pairs"),
    "model": ("is not a mapping", "write key: value pairs"),
}


def _explain(err: dict[str, Any], field: str, parent: Any, annotation: Any, meta: list[Any]) -> tuple[str, str]:
    """(field path, 'what is wrong; how to fix') for one pydantic error dict."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return field, f"required key is missing; add `{field.rsplit('.', 1)[-1]}:`"
    if kind == "extra_forbidden":
        return field, _unknown_key(str(err["loc"][-1]), parent)
    if kind == "literal_error":
        options = [str(o) for o in typing.get_args(annotation)] or [ctx.get("expected", "")]
        return field, f"{show_value(value)} is not one of {', '.join(options)}; use one of these"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "kind")).strip("'")
        tags = ", ".join(_union_tags(annotation, key))
        if kind == "union_tag_not_found":
            return f"{field}.{key}", f"required key is missing; add `{key}:` with one of {tags}"
        return f"{field}.{key}", f"{show_value(ctx.get('tag'))} is not one of {tags}; use one of these"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return field, _out_of_range(value, kind, ctx, meta)
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        unit = ("item" if kind == "too_short" else "character") + ("s" if least != 1 else "")
        what = "is empty" if value in ([], "") else "is too short"
        return field, f"{show_value(value)} {what}; give at least {least} {unit}"
    if kind == "string_pattern_mismatch":
        return field, f"{show_value(value)} does not match {ctx.get('pattern')}; use letters, digits, '_', '.' and '-' only"
    if kind in ("value_error", "assertion_error"):
        return field, str(ctx.get("error", err["msg"]))
    prefix = kind.split("_", 1)[0]
    if prefix in _KIND_HINTS or kind == "model_attributes_type":
        what, fix = _KIND_HINTS.get(prefix, _KIND_HINTS["model"])
        return field, f"{show_value(value)} {what}; {fix}"
    return field, f"{show_value(value)} is invalid ({err['msg']}); fix this value"


def _out_of_range(value: Any, kind: str, ctx: dict[str, Any], meta: list[Any]) -> str:
    low = next((m.ge for m in meta if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in meta if getattr(m, "le", None) is not None), None)
    if low is not None and high is not None:
        return f"{show_value(value)} is not within [{_num(low)}, {_num(high)}]; use a value from {_num(low)} to {_num(high)}"
    words, key, op = {
        "greater_than_equal": ("below the minimum", "ge", ">="),
        "greater_than": ("not above", "gt", ">"),
        "less_than_equal": ("above the maximum", "le", "<="),
        "less_than": ("not below", "lt", "<"),
    }[kind]
    limit = _num(ctx.get(key))
    return f"{show_value(value)} is {words} {limit}; use a value {op} {limit}"


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _unknown_key(key: str, parent: Any) -> str:
    allowed = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    odd = [c for c in key if not c.isascii()]
    if odd:  # look-alike letters print the same as the ASCII ones: name them
        hint = f"it holds the non-ASCII {', '.join(f'{c!r} (U+{ord(c):04X})' for c in odd[:3])}; " + hint
    return f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}"


def show_value(value: Any) -> str:
    """Short repr of a user value for an error message (YAML spelling for null/true/false)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

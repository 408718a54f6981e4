"""A config's ``context_lengths``: the field's rules per ``context_unit`` (``EvalConfig`` applies them at load).
``resolved_lengths.py`` turns them into each model's tokens: as written (``context_unit: tokens``), or from
fractions of each model's window (``context_unit: window``): ``tokens = floor(fraction x window)``.

The window is the model's maximum context (``models[i].context_window``, else what its config says); finding it
needs the model's files, so ``run/preflight.py`` looks it up and hands the numbers to ``resolved_lengths.window_lengths``.
Every refusal happens before anything is written: a model without a window, a length whose prompt plus answer
budget (``max_new_tokens + reasoning_tokens``) does not fit it (naming the largest fraction that does), two
fractions that come to the same tokens.
"""

from __future__ import annotations

from typing import Any

from evalkit.config.validation_errors import show_value
from evalkit.errors import FieldError

__all__ = ["LENGTHS_BY_UNIT", "MIN_CONTEXT_TOKENS", "a_number", "check_lengths_in_unit", "lengths_schema"]

MIN_CONTEXT_TOKENS = 32  # the shortest context length evalkit plans (a prompt needs room beyond its fixed parts)
# what a length is under each unit, for the JSON Schema (EvalConfig's json_schema_extra): a top-level condition
LENGTHS_BY_UNIT = {
    "if": {"required": ["context_unit"], "properties": {"context_unit": {"const": "window"}}},
    "then": {"properties": {"context_lengths": {"items": {"maximum": 1}}}},
    "else": {"properties": {"context_lengths": {"items": {"type": "integer", "minimum": MIN_CONTEXT_TOKENS}}}},
}


def a_number(value: Any) -> Any:
    """A context length is a number (a whole one of tokens, or a fraction of a window); the unit is checked later."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{show_value(value)} is not a number; write a whole number of tokens such as 4096 "
                         "(or a fraction such as 0.5 under context_unit: window)")
    return value


def lengths_schema(schema: dict[str, Any]) -> None:
    """``json_schema_extra`` of ``context_lengths``: positive numbers, unique; ``LENGTHS_BY_UNIT`` says which."""
    schema["items"] = {"type": "number", "exclusiveMinimum": 0}
    schema["uniqueItems"] = True


def check_lengths_in_unit(lengths: list[int | float], unit: str) -> list[int | float]:
    """``lengths`` checked against ``unit`` (FieldError naming the entry): whole tokens >= ``MIN_CONTEXT_TOKENS``, or
    fractions in (0, 1], returned as floats so that ``1`` and ``1.0`` are one config (and one hash)."""
    for index, length in enumerate(lengths):
        if unit == "window" and not 0 < length <= 1:  # NaN fails this too
            raise FieldError(index, f"{show_value(length)} is not a fraction of the window in (0, 1]; use a value "
                             "above 0 and at most 1 (or context_unit: tokens for token counts)")
        if unit == "tokens" and not isinstance(length, int):
            raise FieldError(index, f"{show_value(length)} is not a whole number of tokens; write an integer >= "
                             f"{MIN_CONTEXT_TOKENS}, or set context_unit: window for fractions of each model's window")
        if unit == "tokens" and length < MIN_CONTEXT_TOKENS:
            raise FieldError(index, f"{show_value(length)} is below the minimum {MIN_CONTEXT_TOKENS}; use a value "
                             f">= {MIN_CONTEXT_TOKENS}")
    return [float(length) for length in lengths] if unit == "window" else lengths

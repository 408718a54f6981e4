"""Needle variants: other wordings of a task's needle (``needle_variants:`` in a task file), one per trial.

A variant carries the same drawn value (and key) as the task's own needle, so trials that differ only in the
variant (the config's ``layout.needle_variant`` axis) are paired: same value, same haystack, same depth. The
question and the answer stay the task's; only the sentence hidden in the haystack changes. Variants at graded
overlap with the question (NoLiMa-style) make similarity an axis; evalkit measures the overlap itself
(``prompt/similarity.py``), it is never taken from the file.
"""

from __future__ import annotations

import dataclasses

from evalkit.errors import TaskError
from evalkit.tasks.spec import TaskSpec
from evalkit.types import NeedleInstance


def variant_names(task: TaskSpec) -> tuple[str, ...]:
    """The task's needle variant names, in file order (() when it has none)."""
    return tuple(task.needle_variants or ())


def with_variant(task: TaskSpec, needle: NeedleInstance, variant: str | None) -> NeedleInstance:
    """``needle`` with its sentence written as ``task``'s variant ``variant`` (None: unchanged).

    The template is filled with the needle's own value (and key), so only the wording differs. An unknown name
    raises TaskError listing the task's variants (``evalkit validate`` refuses it before: run/axis_checks.py).
    """
    if variant is None:
        return needle
    templates = task.needle_variants or {}
    if variant not in templates:
        known = ", ".join(templates) or "none"
        raise TaskError(f"task {task.name}: needle_variant {variant!r} is not one of its needle_variants ({known})")
    # format ignores names a template does not use: a template may name {key} where the task draws one
    text = templates[variant].format(value=needle.value, key=needle.key)
    return dataclasses.replace(needle, needle=text)

"""Placing a needle's look-alikes (a task's ``distractors:`` block) as further needles at their depths.

How many go in is the layout's ``distractor_count`` (None: the task's ``distractors.count``): the first n drawn
for the trial's seed, so trials that differ only in the count share the needle, its depth and the haystack stream
(the haystack leaves out the values of every look-alike the seed could place, not only the placed ones). They go in
as further needles (``multi_needle.place_needles``, after a multi-needle task's own), each at the whole-unit
boundary nearest its requested depth (``distractor_depths``); their spans come back as ``PlacedDistractor``s and
the ``BuiltPrompt``'s further needles are the task's own again.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from evalkit.errors import PlacementError
from evalkit.prompt.tokenization import decode_exact
from evalkit.tasks.distractor_spec import DistractorsSpec
from evalkit.tasks.needles import distractors_for
from evalkit.types import BuiltPrompt, Distractor, NeedleInstance, PlacedDistractor

__all__ = ["distractor_depths", "distractors_to_place", "split_distractors"]


def distractor_depths(spec: DistractorsSpec, count: int, needle_depth: float) -> list[float]:
    """Requested depths of ``count`` look-alikes (see ``tasks/distractor_spec.py``), clamped to [0, 1]."""
    depth = 0.0 if math.isnan(needle_depth) else needle_depth  # the oracle: no haystack, every depth is one place
    placement = spec.placement
    if isinstance(placement, list):
        if count > len(placement):
            raise PlacementError(f"distractors.placement lists {len(placement)} depths and {count} distractors are "
                                 "placed; list one depth per distractor or place fewer (layout.distractor_count)")
        depths = placement[:count]
    elif placement == "spread":
        depths = [(i + 0.5) / count for i in range(count)]
    elif placement == "before":
        depths = [depth - spec.gap * (i + 1) for i in range(count)]
    elif placement == "after":
        depths = [depth + spec.gap * (i + 1) for i in range(count)]
    else:  # around: the closest pair first, one before and one after
        depths = [depth + spec.gap * (i // 2 + 1) * (-1 if i % 2 == 0 else 1) for i in range(count)]
    return [round(min(1.0, max(0.0, d)), 6) for d in depths]


def distractors_to_place(task: Any, needle: NeedleInstance, layout_count: int | None, seed: int,
                         control: str) -> tuple[Distractor, ...]:
    """The look-alikes one trial places: the first ``layout_count`` (None: the task's count) of its draw.

    ``task`` is the TaskSpec. A closed-book trial places none: it is the same haystack with no fact at all.
    """
    spec = task.distractors
    if spec is None:
        if layout_count:
            raise PlacementError(f"task {task.name!r} has no distractors: block, so {layout_count} look-alikes "
                                 "cannot be placed; add one to the task or drop the count for it")
        return ()
    count = spec.count if layout_count is None else layout_count
    if control == "closed_book" or count == 0:
        return ()
    if count <= len(needle.distractors):
        return needle.distractors[:count]
    return distractors_for(task, needle, seed, count)


def split_distractors(tokenizer: Any, prompt: BuiltPrompt, distractors: tuple[Distractor, ...],
                      depths: list[float]) -> tuple[BuiltPrompt, tuple[PlacedDistractor, ...]]:
    """``prompt`` whose last further needles are ``distractors``: the prompt with the task's own further needles
    only, and the look-alikes as placed (their spans decode back to their text, or PlacementError)."""
    if not distractors:
        return prompt, ()
    own = len(prompt.extra_needle_spans) - len(distractors)
    placed = []
    for distractor, depth, span, achieved in zip(distractors, depths, prompt.extra_needle_spans[own:],
                                                 prompt.extra_needle_depths[own:]):
        text = decode_exact(tokenizer, prompt.input_ids[span.token_start : span.token_end]).strip()
        if text != distractor.text.strip():
            raise PlacementError(f"distractor {distractor.text.strip()!r} decodes to {text!r}; "
                                 "use look-alikes this tokenizer can represent")
        placed.append(PlacedDistractor(text=text, value=distractor.value, key=distractor.key, kind=distractor.kind,
                                       token_start=span.token_start, token_end=span.token_end,
                                       requested_depth=depth, achieved_depth=achieved))
    stripped = dataclasses.replace(prompt, extra_needle_spans=prompt.extra_needle_spans[:own],
                                   extra_needle_depths=prompt.extra_needle_depths[:own])
    return stripped, tuple(placed)

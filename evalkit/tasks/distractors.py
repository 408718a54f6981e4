"""Drawing a needle's look-alikes (a task's ``distractors:`` block) from the trial seed.

The draws come from their own random stream (``evalkit.distractors:{seed}``), one look-alike after another, so the
needle's value and key are the same with or without distractors, and the first n of a longer draw are the n of a
shorter one: a layout that places 1 or 4 of them places the same first ones (paired trials).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from evalkit.config.layouts import MAX_DISTRACTORS
from evalkit.errors import TaskError
from evalkit.tasks.distractor_spec import DistractorsSpec
from evalkit.types import Distractor

# draws of an already-taken key or value before giving up (the task's checks leave room for every draw)
MAX_REDRAWS = 10_000


@dataclass(frozen=True)
class LookAlikeSource:
    """What the look-alikes of one trial's needle are made from: its template, its key and value and their draws.

    ``taken_keys`` / ``taken_values`` are what the prompt's needles already carry (the gold ones included);
    ``key_capacity`` / ``value_capacity`` how many distinct keys and values the draws can give in all.
    """

    template: str
    gold_key: str
    gold_value: str
    draw_key: Callable[[random.Random], str] | None
    draw_value: Callable[[random.Random], str]
    taken_keys: tuple[str, ...]
    taken_values: tuple[str, ...]
    key_capacity: float
    value_capacity: float


def pool_size(spec: DistractorsSpec, source: LookAlikeSource) -> int:
    """How many look-alikes one trial can draw: at most ``MAX_DISTRACTORS``, fewer when keys or values run out."""
    room = float(MAX_DISTRACTORS)
    if spec.kind in ("other_key", "same_value"):
        room = min(room, source.key_capacity - len(set(source.taken_keys)))
    if spec.kind in ("other_key", "variant"):
        room = min(room, source.value_capacity - len(set(source.taken_values)))
    return max(0, int(room))


def draw_distractors(spec: DistractorsSpec, source: LookAlikeSource, seed: int, count: int) -> tuple[Distractor, ...]:
    """The first ``count`` look-alikes of the trial ``seed`` (TaskError when the keys or values run out)."""
    if count > pool_size(spec, source):
        raise TaskError(f"distractors.count: {count} {spec.kind} look-alikes asked, and this needle's keys and values "
                        f"leave room for {pool_size(spec, source)}; ask for fewer", task_field="distractors.count")
    rng = random.Random(f"evalkit.distractors:{seed}")
    keys, values = set(source.taken_keys), set(source.taken_values)
    drawn: list[Distractor] = []
    for index in range(count):
        key = source.gold_key
        if spec.kind != "variant":
            key = _fresh(source.draw_key, rng, keys)
        value = source.gold_value
        if spec.kind != "same_value":
            value = _fresh(source.draw_value, rng, values)
        template = spec.variants[index % len(spec.variants)] if spec.kind == "variant" else source.template
        drawn.append(Distractor(text=template.format(key=key, value=value), value=value, key=key, kind=spec.kind))
    return tuple(drawn)


def _fresh(draw: Callable[[random.Random], str] | None, rng: random.Random, taken: set[str]) -> str:
    """A draw not in ``taken`` (added to it): keys and values of look-alikes differ from every other one."""
    if draw is None:
        raise TaskError("distractors.kind: this needle has no {key} to vary; put {key} in needle or use kind: variant",
                        task_field="distractors.kind")
    for _ in range(MAX_REDRAWS):
        text = draw(rng)
        if text not in taken:
            taken.add(text)
            return text
    raise TaskError(f"distractors: no new value after {MAX_REDRAWS} draws; give the key or value more room",
                    task_field="distractors")

"""The ``distractors:`` block of a task file: look-alikes of the needle planted in the haystack.

A distractor is a further needle that resembles the fact asked for (RULER's multikey needles, NoLiMa's
near misses): ``count`` of them (0..32; a config's ``layout.distractor_count`` may place fewer or more), of one
``kind``:

- ``other_key``: the needle's own template with another ``{key}`` and another ``{value}`` (needs ``{key}`` in the
  needle, so the question can tell them apart);
- ``same_value``: the needle's template with another key and the gold value (needs ``{key}`` in the needle);
- ``variant``: near-miss templates listed in ``variants`` (used in turn), filled with the trial's own key and
  another value.

Values are distinct from the gold value and from each other (``same_value`` repeats the gold on purpose), keys
distinct from the gold key and from each other. ``placement`` says where they go, as depths of the haystack:
``spread`` (evenly: depth ``(i + 0.5) / n`` for the i-th of n), ``before`` / ``after`` the needle (the i-th at
``gap * (i + 1)`` from the needle's depth), ``around`` it (alternately before and after, the closest pair first),
or a list of fixed depths (one per distractor). Depths outside [0, 1] are clamped to the haystack's ends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evalkit.config.layouts import MAX_DISTRACTORS
from evalkit.errors import FieldError
from evalkit.tasks.words import WORDS

_SPEC = ConfigDict(extra="forbid", frozen=True, strict=True)

DISTRACTOR_KINDS = ("other_key", "same_value", "variant")
RELATIVE_PLACEMENTS = ("spread", "before", "after", "around")
Depth = Annotated[float, Field(ge=0.0, le=1.0)]


class DistractorsSpec(BaseModel):
    """A task's look-alikes: how many, how they differ from the needle, and where they go."""

    model_config = _SPEC
    count: int = Field(4, ge=0, le=MAX_DISTRACTORS, description="look-alikes per prompt (a layout may change it)")
    kind: Literal["other_key", "same_value", "variant"] = Field(
        "other_key", description="other_key: another key and value; same_value: the gold value under another key; "
        "variant: the templates of `variants` with the trial's key and another value")
    placement: Literal["spread", "before", "after", "around"] | Annotated[list[Depth], Field(min_length=1)] = Field(
        "spread", description="spread, before, after, around (the needle), or a list of depths, one per distractor")
    gap: float = Field(0.1, gt=0.0, le=1.0, description="depth between neighbours for before, after and around")
    variants: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, description="near-miss needle templates with {value} (and {key}) for kind: variant")

    @field_validator("placement", mode="before")
    @classmethod
    def _known_placement(cls, placement: object) -> object:
        # before the union is tried: one message instead of one per union member
        if isinstance(placement, list):
            if not placement:
                raise ValueError("[] is empty; list one depth from 0 to 1 per distractor (or use spread)")
            for index, depth in enumerate(placement):
                if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not 0 <= depth <= 1:
                    raise ValueError(f"[{index}] is {depth!r}, not a depth; write a number from 0 to 1")
        elif placement not in RELATIVE_PLACEMENTS:
            raise ValueError(f"{placement!r} is not one of {', '.join(RELATIVE_PLACEMENTS)}; use one of these or a "
                             "list of depths from 0 to 1, one per distractor")
        return placement

    @model_validator(mode="after")
    def _variants_for_variant_kind(self) -> "DistractorsSpec":
        if self.kind == "variant" and not self.variants:
            raise FieldError("variants", "kind: variant needs near-miss templates; list them under `variants:`")
        if self.kind != "variant" and self.variants:
            raise FieldError("variants", f"is used by kind: variant only (kind is {self.kind}); remove it")
        if isinstance(self.placement, list) and len(self.placement) < self.count:
            raise FieldError("placement", f"lists {len(self.placement)} depths for count {self.count}; "
                                          "give one depth per distractor")
        return self


def value_capacity(spec: object) -> float:
    """How many distinct values a ``value:`` or ``key:`` spec can draw (``inf`` for UUIDs)."""
    kind = getattr(spec, "kind", None)
    if kind == "integer":
        return 9 * 10 ** (spec.digits - 1)  # type: ignore[attr-defined]
    if kind == "choice":
        return len(spec.values)  # type: ignore[attr-defined]
    if kind == "word":
        return len(WORDS)
    if kind == "fixed":
        return 1
    return float("inf")


def check_distractors(spec: DistractorsSpec, needle: str | None, key: object, value: object,
                      template_names: set[str], generator_kind: str | None) -> None:
    """FieldError naming the field and the fix when the task cannot make ``spec``'s look-alikes.

    ``template_names`` are the ``{fields}`` of the needle template; ``generator_kind`` the task's generator kind.
    """
    if generator_kind is not None:
        if generator_kind not in ("multikey", "multivalue", "multiquery"):
            raise FieldError("distractors", f"a {generator_kind} generator makes its own needle and has no "
                                            "look-alike template; remove distractors (or use a needle template)")
        return  # RULER's magic-number needles: word keys and numbers, room for every count
    if spec.kind in ("other_key", "same_value") and "key" not in template_names:
        raise FieldError("distractors.kind", f"{spec.kind} look-alikes differ from the needle in {{key}}, and the "
                                             f"needle {needle!r} has none; put {{key}} in needle (with a `key:` "
                                             "block) or use kind: variant")
    if spec.kind in ("other_key", "same_value") and value_capacity(key) < spec.count + 1:
        raise FieldError("distractors.count", f"{spec.count} {spec.kind} look-alikes need {spec.count + 1} "
                                              "distinct keys and key: can draw fewer; list more keys or lower count")
    if spec.kind in ("other_key", "variant") and value_capacity(value) < spec.count + 1:
        raise FieldError("distractors.count", f"{spec.count} {spec.kind} look-alikes need {spec.count + 1} distinct "
                                              "values and value: can draw fewer; use more values or lower count")

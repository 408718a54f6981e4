"""Prompt layouts as experiment axes, the config side (``prompt/layouts.py`` applies them to a prompt).

Axes: where the question and instructions go, template, markers, prefix.

A config's ``layout:`` block lists values per axis; the grid is their cross product and every trial
runs under one ``Layout``. Axes left out keep their default, and a layout at its defaults gives the
prompt evalkit built before layouts existed (and the same trial ids: see ``Layout.id_pairs``)::

    layout:
      question_position: [after, before, both]   # Liu et al.'s query-aware contextualisation is "both"
      chat_template: [true, false]

Axes: ``question_position`` (after | before | both), ``instruction_position`` (before | after the
context), ``chat_template`` (null = the model entry's setting, true, false), ``system_prompt`` (null = the
model entry's, true = the entry's text or ``DEFAULT_SYSTEM_PROMPT``, false = no system message; a
template with a built-in default, like SmolLM2's, still writes its own), ``context_markers`` (text that
opens and closes the context: ``CONTEXT_MARKERS``) and ``answer_prefix`` (true = the task's, false = none).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_SYSTEM_PROMPT = "You are a careful reader. Answer the question using only the text you are given."

# name -> (text before the context, text after it); the opening text ends the preamble region
CONTEXT_MARKERS: dict[str, tuple[str, str]] = {
    "none": ("", ""),
    "xml": ("<document>", "</document>"),
    "brackets": ("[BEGIN TEXT]", "[END TEXT]"),
    "dashes": ("-----", "-----"),
}


@dataclass(frozen=True)
class Layout:
    """One prompt layout; the defaults are evalkit's original layout."""

    question_position: str = "after"
    instruction_position: str = "before"
    chat_template: bool | None = None
    system_prompt: bool | None = None
    context_markers: str = "none"
    answer_prefix: bool = True
    # content axes: how many look-alikes the haystack holds (None: the task's ``distractors.count``), the
    # haystack's sentences in the source's order or shuffled with the trial's seed, which needle variant of the
    # task is placed (None: the task's ``needle``)
    distractor_count: int | None = None
    haystack_order: str = "coherent"
    needle_variant: str | None = None

    def id_pairs(self) -> tuple[tuple[str, object], ...]:
        """(axis, value) for every axis off its default: what enters a trial id (none for the default)."""
        default = Layout()
        return tuple((f.name, getattr(self, f.name)) for f in dataclasses.fields(self)
                     if getattr(self, f.name) != getattr(default, f.name))

    @classmethod
    def from_pairs(cls, pairs: tuple[tuple[str, object], ...]) -> "Layout":
        """The layout whose non-default axes are ``pairs`` (inverse of ``id_pairs``)."""
        return cls(**dict(pairs))

    def axes(self) -> dict[str, object]:
        """Every axis and its value (for records and report columns)."""
        return dataclasses.asdict(self)

    def label(self, varied: tuple[str, ...] = ()) -> str:
        """Short name: the axes in ``varied`` and every axis off its default, e.g. ``"question before"``."""
        default = Layout()
        names = [_AXIS_WORDS[f.name](getattr(self, f.name)) for f in dataclasses.fields(self)
                 if f.name in varied or getattr(self, f.name) != getattr(default, f.name)]
        return ", ".join(names) or "default layout"


_AXIS_WORDS = {
    "question_position": lambda v: f"question {v}",
    "instruction_position": lambda v: f"instructions {v}",
    "chat_template": lambda v: "model's template setting" if v is None else ("chat template" if v else "no chat template"),
    "system_prompt": lambda v: "model's system prompt" if v is None else ("system prompt" if v else "no system prompt"),
    "context_markers": lambda v: "no markers" if v == "none" else f"{v} markers",
    "answer_prefix": lambda v: "answer prefix" if v else "no answer prefix",
    "distractor_count": lambda v: "task's distractors" if v is None else f"{v} distractor{'' if v == 1 else 's'}",
    "haystack_order": lambda v: f"{v} haystack",
    "needle_variant": lambda v: "task's needle" if v is None else f"needle {v}",
}


MAX_DISTRACTORS = 32  # look-alikes one prompt may hold (a task's ``distractors.count`` has the same bound)
_UNIQUE = {"uniqueItems": True}  # for `evalkit schema`: what `_no_repeats` holds


class LayoutGrid(BaseModel):
    """The ``layout:`` block of an eval config: values per axis (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    question_position: list[Literal["after", "before", "both"]] = Field(
        default_factory=lambda: ["after"], min_length=1, json_schema_extra=_UNIQUE)
    instruction_position: list[Literal["before", "after"]] = Field(
        default_factory=lambda: ["before"], min_length=1, json_schema_extra=_UNIQUE)
    chat_template: list[bool | None] = Field(default_factory=lambda: [None], min_length=1, json_schema_extra=_UNIQUE)
    system_prompt: list[bool | None] = Field(default_factory=lambda: [None], min_length=1, json_schema_extra=_UNIQUE)
    context_markers: list[Literal["none", "xml", "brackets", "dashes"]] = Field(
        default_factory=lambda: ["none"], min_length=1, json_schema_extra=_UNIQUE)
    answer_prefix: list[bool] = Field(default_factory=lambda: [True], min_length=1, json_schema_extra=_UNIQUE)
    distractor_count: list[Annotated[int, Field(ge=0, le=MAX_DISTRACTORS)] | None] = Field(
        default_factory=lambda: [None], min_length=1, json_schema_extra=_UNIQUE)
    haystack_order: list[Literal["coherent", "shuffled"]] = Field(
        default_factory=lambda: ["coherent"], min_length=1, json_schema_extra=_UNIQUE)
    needle_variant: list[Annotated[str, Field(min_length=1)] | None] = Field(
        default_factory=lambda: [None], min_length=1, json_schema_extra=_UNIQUE)

    @field_validator("*")
    @classmethod
    def _no_repeats(cls, value: list[object]) -> list[object]:
        # a repeated value would plan the same trial twice
        for index, item in enumerate(value):
            if item in value[:index]:
                raise ValueError(f"{item!r} appears twice; list each value once")
        return value

    def layouts(self) -> list[Layout]:
        """Every layout of the grid, in axis order (the first is the comparison baseline)."""
        names = [f.name for f in dataclasses.fields(Layout)]
        return [Layout(**dict(zip(names, combo))) for combo in itertools.product(*(getattr(self, n) for n in names))]

    def varied_axes(self) -> tuple[str, ...]:
        """Axes given more than one value: they name the layouts in reports."""
        return tuple(f.name for f in dataclasses.fields(Layout) if len(getattr(self, f.name)) > 1)

    def is_default(self) -> bool:
        """True for the single default layout (then records carry no layout label)."""
        return self.layouts() == [Layout()]

    def label_of(self, layout: Layout) -> str:
        """What reports call ``layout`` in this grid: its varied and off-default axes ("" for the default grid)."""
        return "" if self.is_default() else layout.label(self.varied_axes())

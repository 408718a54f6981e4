"""The ``search:`` block of an eval config: what ``evalkit calibrate`` varies to find a model's difficulty.

A position study answers nothing at the floor or the ceiling: a model that finds every fact (or none) at every
depth reads "flat". ``evalkit calibrate CONFIG`` searches, for each model and task of the config, the setting of
one axis at which accuracy at the best position is near ``target`` (see ``evalkit/search/``)::

    search:
      axis: context_length      # or distractor_count (look-alikes planted, the layout axis)
      low: 256                  # the easiest setting searched
      high: 8192                # the hardest
      target: 0.8               # accuracy at the best position the setting should give
      tolerance: 0.1            # stop when the whole 95% interval lies within target +- tolerance
      samples_per_step: 10      # samples added per step (each runs at every search depth)
      budget: 300               # trials per model x task, never exceeded

The block is not part of the grid: ``evalkit run`` ignores it and it stays out of ``config_hash``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from evalkit.errors import FieldError

SEARCH_AXES = ("context_length", "distractor_count")


class SearchConfig(BaseModel):
    """The ``search:`` block of ``evalkit calibrate``: the axis it varies and its range, the accuracy at the best
    position it looks for, when it stops and what it may spend (see docs/calibrate.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    axis: Literal["context_length", "distractor_count"] = Field(
        "context_length", description="what the search varies: total prompt tokens, or look-alikes planted")
    low: int = Field(ge=0, description="the easiest setting searched (tokens, or a number of look-alikes)")
    high: int = Field(ge=1, description="the hardest setting searched")
    target: float = Field(0.8, gt=0.0, lt=1.0, description="accuracy at the best position to find")
    tolerance: float = Field(0.1, gt=0.0, le=0.5,
                             description="stop when the whole 95% interval lies within target +- tolerance")
    samples_per_step: int = Field(10, ge=1, le=1000, description="samples added per step, each at every depth")
    budget: int = Field(300, ge=1, le=1_000_000, description="trials per model x task; never exceeded")
    depths: list[Annotated[float, Field(ge=0.0, le=1.0)]] | None = Field(
        None, min_length=1, description="positions measured at each step (default: the config's first and last "
                                        "depth); accuracy at the best of them is what is searched",
        json_schema_extra={"uniqueItems": True})

    @model_validator(mode="after")
    def _a_range(self) -> SearchConfig:
        if self.high <= self.low:
            raise FieldError("high", f"{self.high} is not above low ({self.low}); give the hardest setting in high")
        if self.axis == "context_length" and self.low < 32:
            raise FieldError("low", f"{self.low} tokens is below the shortest prompt (32); use 32 or more")
        if self.depths is not None and len(set(self.depths)) != len(self.depths):
            raise FieldError("depths", "lists a depth twice; list each once")
        return self

    def search_depths(self, config_depths: list[float]) -> list[float]:
        """The depths each step runs: ``depths``, else the config's first and last (one if they are equal)."""
        if self.depths is not None:
            return list(self.depths)
        return sorted({min(config_depths), max(config_depths)})

    def step_trials(self, config_depths: list[float]) -> int:
        """Trials one step adds (``samples_per_step`` at every search depth)."""
        return self.samples_per_step * len(self.search_depths(config_depths))

"""``TrialPrompt``: what a trial's prompt was built from and what its record adds (needle and documents tasks)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from evalkit.prompt.similarity import NeedleSimilarity
from evalkit.types import BuiltPrompt, NeedleInstance, PlacedDistractor, PromptParts


@dataclass(frozen=True)
class TrialPrompt:
    """A trial's prompt with the parts and needle it was built from, and what its record adds."""

    parts: PromptParts
    needle: NeedleInstance
    prompt: BuiltPrompt
    extra: dict[str, Any]  # what the task kind adds (facts, the dummy sentence); the grid axes are record fields
    gold_document_index: int | None = None  # document tasks: the gold document's 0-based index
    documents_total: int | None = None  # and how many whole documents the prompt holds
    gold_ids: tuple[int, ...] | None = None  # the gold answer's ids after the prompt (None: from the parts)
    metric: str = "contains"  # the task's primary metric (evalkit/scoring.py METRICS)
    keyword_threshold: float = 0.6
    similarity: NeedleSimilarity | None = None  # the needle's measured similarity to the question (similarity.py)
    # the look-alikes placed (a task's ``distractors:`` block), in the order drawn; their spans are not among the
    # prompt's ``extra_needle_spans`` (the task's own further needles)
    distractors: tuple[PlacedDistractor, ...] = ()
    # what a value of the needle's kind looks like in an answer (tasks/values.answer_value_pattern; None: free text)
    value_pattern: re.Pattern[str] | None = None

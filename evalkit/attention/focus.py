"""Where the answer step looked (``ATTENTION_FOCUS``): the fact, a look-alike, or neither.

Read from a trial's captured attention (``TrialAttention``) at row 0, the step that produces the first answer
token, averaged over every layer and head, as mass per token (a span's mass divided by its length, so a long
document does not win by size):

- *gold*: the ``needle`` region (a documents task's gold document: the needle region is that document);
- *look-alikes*: each placed distractor's region (``distractor_00`` ...) and, for a documents task, every
  document region but the gold one; *strongest look-alike*: the one with the most mass per token (0 when none);
- *haystack mean*: the mass of the whole context span (``context_before``, ``needle``, ``context_after``: the
  haystack with the fact and the look-alikes in it; a documents task's documents) per token.

Rule: when neither the gold nor the strongest look-alike gets at least ``FOCUS_RATIO`` times the haystack mean,
``neither`` (nothing stood out); else ``fact`` when the gold gets at least the strongest look-alike's mass per token,
``look_alike`` when a look-alike gets more. None when there is no gold span or no haystack around it (a closed-book
or oracle prompt) or the row was not captured.
"""

from __future__ import annotations

import numpy as np

from evalkit.types import REGION_CONTEXT_AFTER, REGION_CONTEXT_BEFORE, REGION_NEEDLE, TrialAttention

__all__ = ["FOCUS_RATIO", "attention_focus"]

FOCUS_RATIO = 2.0  # a span "was looked at" when it gets at least twice the haystack's mass per token


def _per_token(attention: TrialAttention, indices: list[int]) -> float:
    """Mean over layers and heads of row 0's mass on the regions ``indices``, per token of those regions."""
    tokens = sum(int(attention.spans[i][1] - attention.spans[i][0]) for i in indices)
    mass = float(np.nanmean(attention.mass[:, :, 0, indices].sum(-1)))  # [layers, heads] -> one number
    return mass / tokens if tokens else float("nan")


def look_alike_regions(attention: TrialAttention) -> list[int]:
    """Indices of the look-alike regions: the placed distractors, and every document but the gold one."""
    needle = tuple(attention.spans[attention.region_names.index(REGION_NEEDLE)])
    documents = range(len(attention.region_names))[attention.document_slice]
    gold_free = [i for i in documents if tuple(attention.spans[i]) != needle]
    return gold_free + list(range(len(attention.region_names))[attention.distractor_slice])


def attention_focus(attention: TrialAttention) -> str | None:
    """``fact``, ``look_alike`` or ``neither`` by the rule of the module docstring; None where it is undefined."""
    names = attention.region_names
    needle = names.index(REGION_NEEDLE)
    context = [names.index(REGION_CONTEXT_BEFORE), needle, names.index(REGION_CONTEXT_AFTER)]
    start, end = attention.spans[needle]
    haystack_tokens = sum(int(attention.spans[i][1] - attention.spans[i][0]) for i in context)
    if end <= start or haystack_tokens <= end - start or attention.mass.shape[2] == 0:
        return None
    gold, haystack = _per_token(attention, [needle]), _per_token(attention, context)
    look_alikes = [_per_token(attention, [i]) for i in look_alike_regions(attention)]
    strongest = max((m for m in look_alikes if not np.isnan(m)), default=0.0)
    if np.isnan(gold) or np.isnan(haystack):
        return None
    if max(gold, strongest) < FOCUS_RATIO * haystack:
        return "neither"
    return "fact" if gold >= strongest else "look_alike"

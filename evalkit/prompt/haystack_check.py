"""The haystack holds no answer: units that mention an answer candidate are dropped, and every build is checked.

``answer_candidates`` (``tasks/needles.py``) lists what may appear only inside the needles: the gold answer,
the values the needles carry, the key of a key-value pair or of a ``{key}`` needle, the entity a doc_qa question
names; ``controls.build_trial_prompt`` adds the values of the needle's look-alikes (``distractors:``), which the
check allows inside their planted spans (further needles until the prompt is split). A haystack unit
(sentence, document, pair) that contains one is skipped before placement (``CandidateFilter``) and the built
prompt is checked afterwards (``check_haystack_clean``), like the needle round trip: the text outside the needles
must contain none of them. Matching ignores case and needs a non-alphanumeric character (or the text's edge) on
both sides, so "tent" does not match "content" and "12345" does not match inside "123456".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from evalkit.errors import PlacementError
from evalkit.prompt.tokenization import decode_exact
from evalkit.types import REGION_CONTEXT_AFTER, REGION_CONTEXT_BEFORE, REGION_NEEDLE, BuiltPrompt


def candidate_pattern(candidates: Sequence[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching any of ``candidates`` as a whole token; None when there are none."""
    texts = sorted({c.strip() for c in candidates if c.strip()}, key=len, reverse=True)
    if not texts:
        return None
    return re.compile(r"(?<![0-9A-Za-z])(?:" + "|".join(map(re.escape, texts)) + r")(?![0-9A-Za-z])", re.IGNORECASE)


class CandidateFilter:
    """The units of a haystack stream that mention no candidate; ``dropped`` counts the others."""

    def __init__(self, units: Iterable[str], candidates: Sequence[str]):
        self._units = iter(units)
        self._pattern = candidate_pattern(candidates)
        self.dropped = 0

    def __iter__(self) -> Iterator[str]:
        for unit in self._units:
            if self._pattern is not None and self._pattern.search(unit):
                self.dropped += 1
                continue
            yield unit


def check_haystack_clean(tokenizer: Any, prompt: BuiltPrompt, candidates: Sequence[str]) -> None:
    """PlacementError when the context outside the needles decodes to text holding a candidate."""
    pattern = candidate_pattern(candidates)
    if pattern is None:
        return
    start = prompt.regions[REGION_CONTEXT_BEFORE].token_start
    end = prompt.regions[REGION_CONTEXT_AFTER].token_end
    needles = sorted((s.token_start, s.token_end) for s in (prompt.regions[REGION_NEEDLE], *prompt.extra_needle_spans))
    cursor = start
    for needle_start, needle_end in [*needles, (end, end)]:  # the stretches of haystack between the needles
        found = pattern.search(decode_exact(tokenizer, prompt.input_ids[cursor:needle_start]))
        if found:
            raise PlacementError(
                f"the haystack outside the needle contains {found.group(0)!r}, an answer to the question; "
                "this is a placement bug, please report it"
            )
        cursor = max(cursor, needle_end)

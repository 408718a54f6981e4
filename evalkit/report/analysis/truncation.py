"""How many answers were cut off by the generation budget, and when a report must say so.

A trial is truncated when generation used every one of ``max_new_tokens`` without a stop token (its record's
``extra["truncated"]``). A metric that reads the whole first line (best-subspan EM) may then score a right answer
wrong, so a truncation rate above ``NOTABLE_TRUNCATION_SHARE`` is stated in the decision block with the fix.
"""

from __future__ import annotations

import pandas as pd

NOTABLE_TRUNCATION_SHARE = 0.03  # above this share of trials the decision block states the rate


def truncated_count(trials: pd.DataFrame) -> int:
    """Trials whose record says ``extra["truncated"]`` (the generation hit max_new_tokens)."""
    if "extra" not in trials:
        return 0
    return int(sum(bool(isinstance(e, dict) and e.get("truncated")) for e in trials["extra"]))


def notable_truncation(trials: pd.DataFrame) -> tuple[int, int] | None:
    """(truncated, trials) when more than ``NOTABLE_TRUNCATION_SHARE`` of ``trials`` were cut off, else None."""
    truncated = truncated_count(trials)
    if not len(trials) or truncated / len(trials) <= NOTABLE_TRUNCATION_SHARE:
        return None
    return truncated, len(trials)

"""How many answers were cut off by the generation budget, and when a report must say so.

A trial's record says ``extra["truncated"]`` when generation used every one of ``max_new_tokens`` without a stop
token. Whether that cut what the metric scores depends on the metric (``scoring.answer_cut_off``): one that reads
only the first line (Liu et al.'s, ``WHOLE_LINE_METRICS``; ``exact_match`` reads the first non-empty line) lost
nothing when that line had ended before the budget ran out (a base model that never stops still ends its
answer's line); any other metric may have. A cut-off answer scored wrong may be wrong only because it was cut
(one scored right is right whatever followed: a base model that runs on after a complete number is not counted), so the share of those above
``NOTABLE_TRUNCATION_SHARE`` is stated in the decision block with the fix. Where a record has a failure type
(``evalkit/failures.py``), only ``truncated`` counts: a miss whose answer already gave a whole value (a look-alike's,
an invented one) before the budget ran out was decided by that value, not by the cut.
"""

from __future__ import annotations

import pandas as pd

from evalkit.scoring import answer_cut_off

NOTABLE_TRUNCATION_SHARE = 0.03  # above this share of trials the decision block states the rate


def truncated_count(trials: pd.DataFrame) -> int:
    """Trials scored wrong whose scored answer the generation budget cut off.

    A trial with a failure type is cut off when that type is ``truncated``; one without (records written before
    failure types: none, or "") when ``answer_cut_off`` says so.
    """
    if "extra" not in trials:
        return 0
    blank = pd.Series(None, index=trials.index, dtype=object)
    generated = trials["generated"] if "generated" in trials else blank
    metric = trials["metric"] if "metric" in trials else blank
    failure = trials["failure"] if "failure" in trials else blank
    right = trials["correct"].fillna(False).astype(bool) if "correct" in trials else pd.Series(False, index=trials.index)
    return int(sum(_cut_miss(*row) for row in zip(trials["extra"], generated, metric, failure, right)))


def _cut_miss(extra: object, generated: object, metric: object, failure: object, right: bool) -> bool:
    if right:
        return False
    if isinstance(failure, str) and failure:  # "": a record written before failure types
        return failure == "truncated"
    return answer_cut_off(extra, generated, metric)


def notable_truncation(trials: pd.DataFrame) -> tuple[int, int] | None:
    """(truncated, trials) when more than ``NOTABLE_TRUNCATION_SHARE`` of ``trials`` were cut off, else None."""
    truncated = truncated_count(trials)
    if not len(trials) or truncated / len(trials) <= NOTABLE_TRUNCATION_SHARE:
        return None
    return truncated, len(trials)

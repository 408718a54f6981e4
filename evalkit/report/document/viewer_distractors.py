"""The trial viewer's look-alikes: each trial's failure type and its planted distractors, and the prompt pieces
cut at them so the page can outline each one (``viewer_data.py`` builds the pieces, ``viewer_assets.py`` draws).

A saved prompt is cut at each distractor's text (found by string search in the haystack before and after the
needle; one not found is left uncut). A prompt rebuilt from the record has the haystack as token counts: each
count is split at the distractors' token spans and the distractor shown by its recorded text. Records from
before failure types and distractors existed add nothing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

FAILURE_FILTER = ("failure", "failure type")
TEXT_LIMIT = 1000  # characters of a distractor's text kept


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + f" … [{len(text) - TEXT_LIMIT:,} more characters]"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def distractor_marks(row: Any) -> list[dict[str, Any]]:
    """The record's planted distractors as the page shows them: text, value, token span, depth, index."""
    placed = getattr(row, "distractors", None)
    if not isinstance(placed, list):
        return []
    out = []
    for index, item in enumerate(placed):
        if not isinstance(item, dict):
            continue
        start, end = _number(item.get("token_start")), _number(item.get("token_end"))
        out.append({"index": index, "text": _clip(item.get("text")), "value": _clip(item.get("value")),
                    "start": None if start is None else int(start), "end": None if end is None else int(end),
                    "depth": _number(item.get("achieved_depth"))})
    return out


def failure_fields(row: Any) -> dict[str, Any]:
    """``failure``, ``failure_distractor``, ``attention_focus`` and ``distractors`` of a record ({} before them)."""
    failure = getattr(row, "failure", "")
    failure = "" if failure is None or (not isinstance(failure, str) and pd.isna(failure)) else str(failure)
    marks = distractor_marks(row)
    if not failure and not marks:
        return {}
    index = getattr(row, "failure_distractor", None)
    focus = getattr(row, "attention_focus", None)
    return {"failure": failure or None,
            "failure_distractor": None if index is None or pd.isna(index) else int(index),
            "attention_focus": focus if isinstance(focus, str) and focus else None,
            "distractors": marks}


def cut_text(region: str, text: str, marks: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    """``text`` of ``region`` cut at each distractor text found in it, in order: ``(region, text, index)``
    pieces, a distractor's piece with region ``"distractor"`` and its index."""
    found = []
    for mark in marks:
        at = text.find(mark["text"]) if mark["text"] else -1
        if at >= 0:
            found.append((at, at + len(mark["text"]), mark["index"]))
    out, pos = [], 0
    for start, end, index in sorted(found):
        if start < pos:
            continue  # overlapping finds: keep the first
        if start > pos:
            out.append((region, text[pos:start], None))
        out.append(("distractor", text[start:end], index))
        pos = end
    if pos < len(text):
        out.append((region, text[pos:], None))
    return out


def split_counts(region: str, span: Any, marks: list[dict[str, Any]]) -> list[tuple[str, int | str, int | None]]:
    """A haystack region known by its token span, split at the distractors inside it: ``(region, tokens, None)``
    and ``("distractor", text, index)`` pieces, in prompt order; ``[]`` when the span is unknown."""
    if not (isinstance(span, (list, tuple)) and len(span) == 2):
        return []
    start, end = int(span[0]), int(span[1])
    inside = sorted((m for m in marks if m["start"] is not None and m["end"] is not None
                     and start <= m["start"] and m["end"] <= end), key=lambda m: m["start"])
    out: list[tuple[str, int | str, int | None]] = []
    pos = start
    for mark in inside:
        if mark["start"] < pos:
            continue
        if mark["start"] > pos:
            out.append((region, mark["start"] - pos, None))
        out.append(("distractor", mark["text"], mark["index"]))
        pos = mark["end"]
    if end > pos or not out:
        out.append((region, end - pos, None))
    return out

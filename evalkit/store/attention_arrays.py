"""Attention arrays of trial records: each record row's ``TrialAttention`` and the copy events in it.

The files themselves (``attention/<trial_id>.npz``, their arrays and shapes) are ``evalkit/store/format.py``'s.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from evalkit.store.format import TRIAL_ID_PATTERN, attention_path, read_trial_attention
from evalkit.types import TrialAttention

if TYPE_CHECKING:
    import pandas as pd


def attention_for_records(records: pd.DataFrame) -> list[TrialAttention | None]:
    """The arrays of each record row (in order), None where a trial has none (capture off, or skipped)."""
    out: list[TrialAttention | None] = []
    for run_dir, trial_id, status in zip(records["run_dir"], records["trial_id"], records["status"]):
        if status != "ok" or not TRIAL_ID_PATTERN.fullmatch(str(trial_id)):  # such an id was never given an array
            out.append(None)
            continue
        path = attention_path(run_dir, str(trial_id))
        out.append(read_trial_attention(path) if path.is_file() else None)
    return out


def copy_events(att: TrialAttention) -> np.ndarray:
    """[layers, heads, rows] bool: the row predicts a needle token and the head's strongest key is that same
    token inside the needle (a copy-paste event in the sense of Wu et al. 2024)."""
    start, end = att.spans[att.region_names.index("needle")]
    in_needle = (att.argmax_position >= start) & (att.argmax_position < end)
    same = (att.argmax_token == att.row_token[None, None, :]) & (att.row_token >= 0)[None, None, :]
    return in_needle & same & att.row_in_needle[None, None, :]

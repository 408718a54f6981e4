"""Attention arrays of trial records: each record row's ``TrialAttention`` and the copy events in it.

The files themselves (``attention/<trial_id>.npz``, their arrays and shapes) are ``evalkit/store/format.py``'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalkit.errors import RunDirError
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


def retrieval_scores(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(copy events [layers, heads], mean needle mass [layers, heads]) of one trial's array file; RunDirError naming
    the file when it is unreadable, has no needle region or holds arrays that do not fit together (tampered)."""
    att = read_trial_attention(path)
    fix = "rerun that trial (delete its record) or use another run"
    if "needle" not in att.region_names:
        raise RunDirError(f"{path}: region_names {list(att.region_names)} has no 'needle' region; {fix}")
    try:
        events = copy_events(att).sum(axis=2)
        mass = np.nan_to_num(np.nanmean(att.region("needle"), axis=2))
    except (ValueError, IndexError, TypeError) as err:  # shapes that do not broadcast, spans out of range
        raise RunDirError(f"{path}: arrays that do not fit together ({err}); {fix}") from None
    if events.ndim != 2 or events.shape != mass.shape:
        raise RunDirError(f"{path}: copy events {events.shape} and needle mass {mass.shape} are not both "
                          f"[layers, heads]; {fix}")
    return events, mass

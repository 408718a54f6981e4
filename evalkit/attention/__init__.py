"""Attention capture in runs: region layout per trial, the recorder a backend attaches, arrays in the run dir.

    capture.py    the recorder: wraps the model's attention kernel, sums weights per key span
    regions.py    which key spans are summed (prompt regions, sink, generated tokens, haystack bins)
    trial.py      the recorder factory for a backend, and the CaptureRequest of one trial
    preflight.py  refuse a family that cannot be captured before anything is written

The backend records (``models/transformers_backend.py``); ``run/trial_attention.py`` turns its rows into
``TrialAttention``, stored by ``store/attention_arrays.py`` as attention/<trial_id>.npz.

The report side is in evalkit/report/attention*.py.
"""

from __future__ import annotations

from evalkit.attention.regions import PARTITION, REGION_GENERATED, REGION_REMAINDER, REGION_SINK, RegionLayout
from evalkit.attention.regions import region_layout
from evalkit.store.attention_arrays import (
    ATTENTION_DIR,
    TrialAttention,
    attention_path,
    copy_events,
    load_attention,
    load_attention_argmax,
    read_trial_attention,
    save_trial_attention,
)

__all__ = [
    "ATTENTION_DIR",
    "PARTITION",
    "REGION_GENERATED",
    "REGION_REMAINDER",
    "REGION_SINK",
    "RegionLayout",
    "TrialAttention",
    "attention_path",
    "copy_events",
    "load_attention",
    "load_attention_argmax",
    "read_trial_attention",
    "region_layout",
    "save_trial_attention",
]

"""Attention capture in runs: region layout per trial, capture around ``run_prompt``, arrays in the run dir.

    regions.py    which key spans are summed (prompt regions, sink, generated tokens, haystack bins)
    trial.py      run one prompt with capture -> TrialAttention
    preflight.py  refuse a family that cannot be captured before anything is written

The arrays' files (attention/<trial_id>.npz, written atomically) are evalkit/store/format.py's; the loaders
load_attention / load_attention_argmax are in evalkit/report/data/attention.py, the report side in
evalkit/report/analysis/attention*.py.
"""

from __future__ import annotations

from evalkit.attention.regions import PARTITION, REGION_GENERATED, REGION_REMAINDER, REGION_SINK, RegionLayout
from evalkit.attention.regions import region_layout
from evalkit.store.attention_arrays import copy_events
from evalkit.store.format import (
    ATTENTION_DIR,
    TrialAttention,
    attention_path,
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
    "read_trial_attention",
    "region_layout",
    "save_trial_attention",
]

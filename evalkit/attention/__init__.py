"""Attention capture in runs: region layout per trial, the recorder a backend attaches, the trial's arrays.

    capture.py       the recorder: wraps the model's attention kernel, sums chosen rows' weights per key span
    capture_math.py  row-wise mass over key regions (pure tensor functions)
    regions.py       which key spans are summed (prompt regions, sink, generated tokens, haystack bins)
    trial.py         the recorder factory for a backend, and the CaptureRequest of one trial
    rows.py          the backend's recorded rows -> ``TrialAttention`` (evalkit/types.py)
    preflight.py     refuse a family that cannot be captured before anything is written

The backend records (``models/transformers_backend.py``); the arrays' files (attention/<trial_id>.npz,
atomic) are ``store/format.py``'s; the loaders ``load_attention`` / ``load_attention_argmax`` are
``report/data/attention.py``'s and the report side is ``report/analysis/attention*.py``.
"""

from __future__ import annotations

from evalkit.attention.regions import PARTITION, REGION_GENERATED, REGION_REMAINDER, REGION_SINK, RegionLayout
from evalkit.attention.regions import region_layout

__all__ = ["PARTITION", "REGION_GENERATED", "REGION_REMAINDER", "REGION_SINK", "RegionLayout", "region_layout"]

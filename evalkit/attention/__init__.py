"""Attention capture in runs: region layout per trial, capture around the backend's forward.

    capture.py       the attention-interface wrapper: exact output, chosen rows' mass per key region
    capture_math.py  row-wise mass over key regions (pure tensor functions)
    regions.py       which key spans are summed (prompt regions, sink, generated tokens, haystack bins)
    trial.py         run one prompt with capture -> ``TrialAttention`` (evalkit/types.py)
    preflight.py     refuse a family that cannot be captured before anything is written

The arrays' files are evalkit/store/format.py's (attention/<trial_id>.npz, atomic); the loaders
load_attention / load_attention_argmax are evalkit/report/data/attention.py's.
"""

from __future__ import annotations

from evalkit.attention.regions import PARTITION, REGION_GENERATED, REGION_REMAINDER, REGION_SINK, RegionLayout
from evalkit.attention.regions import region_layout

__all__ = ["PARTITION", "REGION_GENERATED", "REGION_REMAINDER", "REGION_SINK", "RegionLayout", "region_layout"]

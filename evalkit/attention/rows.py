"""A trial's stored attention arrays (``TrialAttention``) from what the backend recorded and the region layout.

The backend returns raw rows (``models.base.CapturedRows``: mass per region, argmax key position); this adds
what the report reads per row: the token at each argmax, the row's own token, whether it lies in the needle.
"""

from __future__ import annotations

import numpy as np

from evalkit.attention.regions import RegionLayout
from evalkit.models.base import CapturedRows
from evalkit.types import REGION_NEEDLE, BuiltPrompt, TrialAttention, TrialOutput

__all__ = ["trial_attention"]


def trial_attention(layout: RegionLayout, prompt: BuiltPrompt, output: TrialOutput) -> TrialAttention:
    """The trial's attention arrays from the backend's ``CapturedRows`` (``output.attention``) and its layout."""
    rows: CapturedRows = output.attention  # type: ignore[assignment]
    if not isinstance(rows, CapturedRows):
        raise TypeError("trial_attention: the output holds no captured rows (was capture on for this request?)")
    mass, argmax = rows.mass, rows.argmax  # [layers, heads, rows, regions], [layers, heads, rows]
    count = mass.shape[2]
    tokens = np.array([*prompt.input_ids, *output.generated_token_ids], dtype=np.int64)  # every key's token id
    argmax_token = np.where(argmax >= 0, tokens[np.clip(argmax, 0, len(tokens) - 1)], -1)
    generated = output.generated_token_ids
    row_token = np.array([generated[r] if r < len(generated) else -1 for r in range(count)], dtype=np.int64)
    start, end = layout.span(REGION_NEEDLE)
    needle_tokens = set(prompt.input_ids[start:end])
    return TrialAttention(
        mass=mass,
        remainder=1.0 - mass[..., : layout.partition_size].sum(-1),  # [layers, heads, rows]
        argmax_position=argmax,
        argmax_token=argmax_token,
        row_token=row_token,
        row_in_needle=np.array([int(t) in needle_tokens for t in row_token]),
        region_names=layout.names,
        spans=np.array(layout.spans, dtype=np.int64),
        bins=layout.bins,
        prompt_tokens=prompt.prompt_tokens,
        token_mass=rows.token_mass,
        token_layers=rows.token_layers,
        documents=layout.documents,
        distractors=layout.distractors,
    )

"""The prompt as tokens coloured by attention, for the trial viewer (``viewer_data.py`` adds it to a trial).

A trial gets this view when its run saved the token texts (``save_prompts: true``) and the per-token mass
(``attention.tokens: true``): row 0 (the step that produces the first answer token), as the mean over the
stored layers and per stored layer. The prompt is cut at the attention regions (sink, preamble, haystack
before, needle, haystack after, question); a region longer than ``2 * fold_tokens`` keeps its first and last
``fold_tokens`` tokens, so a 128k-token prompt costs about 2,400 tokens of JSON. Masses travel as float16
values written with the fewest digits that read back to the same float16. The colour scale of each series is
its largest mass off the sink (``top``), taken over the whole prompt, folded tokens included.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.types import TrialAttention

FOLD_TOKENS = 200  # tokens kept at each end of a long region
MAX_TOKEN_TRIALS = 500  # trials whose tokens are embedded (each about 40 bytes a token, up to ~2,400 tokens)
WHOLE_REGIONS = ("needle",)  # shown whole up to LONG_NEEDLE_TOKENS, however long the fold
LONG_NEEDLE_TOKENS = 2000
SINK = "sink"


def float16_values(values: np.ndarray) -> list[float | None]:
    """float16 values as the shortest decimals that read back to the same float16 (NaN, inf -> None)."""
    return [float(str(v)) if np.isfinite(v) else None for v in np.asarray(values).astype(np.float16).ravel()]


def _regions(att: TrialAttention, positions: int) -> list[tuple[str, int, int]]:
    """``(name, start, end)`` of the partition regions inside the prompt, in order; gaps as ``other``."""
    spans = [(str(name), int(a), min(int(b), positions))
             for name, (a, b) in zip(att.region_names[: att.partition_size], att.spans[: att.partition_size])]
    out, at = [], 0
    for name, start, end in sorted((s for s in spans if s[1] < s[2]), key=lambda s: s[1]):
        if start > at:
            out.append(("other", at, start))  # not expected: the partition tiles the prompt
        if end > at:
            out.append((name, max(start, at), end))
            at = end
    if at < positions:
        out.append(("other", at, positions))
    return out


def _kept(name: str, start: int, end: int, fold_tokens: int) -> tuple[list[int], int]:
    """Positions shown of one region, and how many after the first ``fold_tokens`` are folded away."""
    keep = LONG_NEEDLE_TOKENS if name in WHOLE_REGIONS else fold_tokens
    if end - start <= 2 * keep:
        return list(range(start, end)), 0
    return list(range(start, start + keep)) + list(range(end - keep, end)), end - start - 2 * keep


def token_view(att: TrialAttention, texts: Sequence[str], fold_tokens: int = FOLD_TOKENS) -> dict[str, Any]:
    """Row 0's per-token mass over the folded prompt; ``texts`` holds one string per prompt token."""
    rows = att.token_mass[:, 0, :].astype(np.float32)  # [stored layers, prompt_tokens]
    layers = [int(x) for x in att.token_layers]
    series = rows.mean(0, keepdims=True) if len(layers) < 2 else np.vstack([rows.mean(0, keepdims=True), rows])
    series = series.astype(np.float16).astype(np.float32)  # [series, prompt_tokens]: the values the page shows
    regions = _regions(att, rows.shape[1])
    sink_end = next((end for name, _, end in regions if name == SINK), 0)
    off_sink = np.nan_to_num(series[:, sink_end:], nan=0.0)
    segments, sink = [], None
    for name, start, end in regions:
        kept, folded = _kept(name, start, end, fold_tokens)
        segments.append({"region": name, "start": start, "head": len(kept) // 2 if folded else len(kept),
                         "folded": folded, "texts": [texts[p] for p in kept],
                         "mass": [float16_values(s[kept]) for s in series]})  # [series][kept tokens]
        if name == SINK:
            sink = float16_values(series[:, start:end].sum(1))
    names = [f"mean over layers {', '.join(map(str, layers))}" if len(layers) > 1 else
             f"layer {layers[0]}" if layers else "mean"] + [f"layer {x}" for x in layers][: len(series) - 1]
    top = off_sink.max(1) if off_sink.shape[1] else np.zeros(len(series))
    return {"layers": layers, "series": names, "top": [float(t) for t in top], "sink": sink,
            "segments": segments, "fold_tokens": fold_tokens}


def token_note(att: TrialAttention | None, texts: Sequence[str] | None, embedded: bool) -> str | None:
    """Why a trial's tokens are not coloured (None when they are)."""
    has_mass = att is not None and att.token_mass is not None and att.token_mass.size > 0
    if has_mass and texts is not None and not embedded:
        return f"Tokens not coloured: only the first {MAX_TOKEN_TRIALS:,} such trials are embedded."
    if has_mass and texts is not None and len(texts) != att.token_mass.shape[-1]:
        return (f"Tokens not coloured: {len(texts):,} saved token texts but attention over "
                f"{att.token_mass.shape[-1]:,} prompt tokens.")
    missing = [why for why, gone in (("no per-token attention (run with attention: {capture: true, tokens: true})",
                                      not has_mass),
                                     ("no saved token texts (run with save_prompts: true)", texts is None)) if gone]
    return "Tokens not coloured: " + " and ".join(missing) + "." if missing else None

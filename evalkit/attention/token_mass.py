"""Per-token attention for ``attention.tokens: true``: the recordings' per-key mass stacked for storage.

Each recording of a trial (the prefill row, then one per decode step) holds ``token_mass [1, layers, 1, keys]``
(mean over heads, see ``capture_math.region_mass_argmax_tokens``). Stored are the chosen layers (all when none
are chosen), every captured row, and the prompt's keys only: ``[stored layers, rows, prompt_tokens]`` float16,
about ``2 * layers * rows * prompt_tokens`` bytes before compression.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.errors import CaptureError


def stored_layers(num_layers: int, chosen: Sequence[int]) -> tuple[int, ...]:
    """The layers whose per-token mass is kept: ``chosen`` (refusing ones the model lacks) or all of them."""
    layers = tuple(chosen) if chosen else tuple(range(num_layers))
    missing = [layer for layer in layers if not 0 <= layer < num_layers]
    if missing:
        raise CaptureError(f"attention.token_layers: {missing} not in this model's layers 0-{num_layers - 1}; "
                         "pick layers below its num_hidden_layers")
    return layers


def stack_token_mass(recordings: Sequence[Any], rows: int, prompt_tokens: int,
                     chosen: Sequence[int]) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """``(token_mass [stored layers, rows, prompt_tokens] float16, layers)``; ``(None, ())`` when not recorded.

    Rows the trial never reached (generation stopped first) stay NaN.
    """
    first = getattr(recordings[0], "token_mass", None) if recordings else None
    if first is None:
        return None, ()
    layers = stored_layers(first.shape[1], chosen)
    out = np.full((len(layers), rows, prompt_tokens), np.nan, dtype=np.float32)
    for row, recording in enumerate(recordings):
        values = recording.token_mass[0, list(layers), 0, :prompt_tokens].float().cpu().numpy()  # [stored, keys]
        out[:, row, : values.shape[-1]] = values
    return out.astype(np.float16), layers


def storage_bytes(context_lengths: Sequence[int], rows: int, layers: int) -> int:
    """Uncompressed float16 bytes of ``token_mass`` for trials of ``context_lengths`` (one entry per trial)."""
    return int(sum(2 * layers * rows * int(length) for length in context_lengths))


def _size(n: int) -> str:
    """``2304 -> "2.3 kB"``, ``5e8 -> "500.0 MB"``."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n} bytes"


def storage_line(context_lengths: Sequence[int], rows: int, chosen: Sequence[int]) -> str:
    """What ``evalkit validate`` prints for ``attention.tokens: true``: the storage the per-token arrays take."""
    if chosen:
        total = storage_bytes(context_lengths, rows, len(chosen))
        return (f"attention.tokens: per-token mass of {len(chosen)} layers x {rows} rows adds up to "
                f"{_size(total)} over {len(context_lengths)} trials (float16, before compression)")
    per_layer = storage_bytes(context_lengths, rows, 1)
    return (f"attention.tokens: per-token mass adds {_size(per_layer)} per model layer over "
            f"{len(context_lengths)} trials ({rows} rows, float16, before compression; every layer is stored, "
            "set attention.token_layers to keep fewer)")

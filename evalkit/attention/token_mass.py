"""Per-token attention for ``attention.tokens: true``: the recordings' per-key mass stacked for storage.

Each recording of a trial (the prefill row, then one per decode step) holds ``token_mass [1, layers, 1, keys]``
(mean over heads, see ``capture_math.region_mass_argmax_tokens``). Stored are the chosen layers (all when none
are chosen), every captured row, and the prompt's keys only: ``[stored layers, rows, prompt_tokens]`` float16,
about ``2 * layers * rows * prompt_tokens`` bytes before compression.
"""

from __future__ import annotations

from collections.abc import Sequence




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

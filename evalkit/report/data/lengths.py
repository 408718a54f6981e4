"""The report's context-length axis: tokens, or the fraction of each model's window.

Runs with ``context_unit: window`` record each trial's ``context_fraction``. Where every placement record carries
one, the by-length tables and charts put the fraction on the axis, so models with different windows line up (half
of a 4k window beside half of a 32k one); the tokens stay beside it, in a column or in the label. Within one model
the two are one-to-one, so a model's own cells are the same either way. Records of token runs (or a mix of both)
keep the axis in tokens.
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.data.labels import placement_trials

TOKENS = "context_length"
FRACTION = "context_fraction"
AXIS_LABELS = {TOKENS: "context length (tokens)", FRACTION: "context length (% of the model's window)"}


def length_axis(df: pd.DataFrame) -> str:
    """``FRACTION`` when every placement record of ``df`` carries a window fraction, else ``TOKENS``."""
    if FRACTION not in df.columns:
        return TOKENS
    fractions = placement_trials(df)[FRACTION]
    return FRACTION if len(fractions) and fractions.notna().all() else TOKENS


def length_text(value: float, axis: str) -> str:
    """One value of the axis as a label: ``4,096`` (tokens) or ``25%`` (of the window)."""
    return f"{float(value) * 100:.4g}%" if axis == FRACTION else f"{int(value):,}"


def length_cell(fraction: float | None, tokens: int) -> str:
    """A table cell for one model's length: ``4,096``, or ``25% (4,096 tokens)`` where it is a window fraction."""
    if fraction is None or pd.isna(fraction):
        return f"{int(tokens):,}"
    return f"{length_text(fraction, FRACTION)} ({int(tokens):,} tokens)"

"""The shape of accuracy over needle depth at 95%: a U, primacy, recency, the middle best, flat, or not decided.

It reads the primacy index (start - middle) and the recency index (end - middle) of ``indices.position_indices``
with their 95% intervals (Newcombe on design-effect counts: a band pools a sample's depths):

- ``u_curve``: both intervals lie above 0 (both ends beat the middle);
- ``primacy`` / ``recency``: only the start's / the end's does;
- ``middle_best``: neither end beats the middle and one interval lies below 0;
- ``flat``: neither interval excludes 0 and both lie within +/- ``FLAT_LIMIT`` (the report gives the bound X it
  reached, rounded up to whole points): "flat within +/- X points" is then a finding, not a failure to find one;
- ``undecided``: neither interval excludes 0 and one reaches past the limit: more samples would tell.

The limit is 8 points: a prompt engineer moves a fact for a gap of ten points, not for three. Documents tasks read
their shape from paired positions instead (``document_positions.curve_shape``, McNemar), and call it flat only
within the same bound (``flat_bound`` on Newcombe's interval of the two positions' accuracies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

# the shape names the documents section already uses (its positions paired by question)
from evalkit.report.analysis.document_positions import FLAT, MIDDLE_BEST, PRIMACY, RECENCY, U_CURVE, UNDECIDED

FLAT_LIMIT = 0.08


@dataclass(frozen=True)
class DepthShape:
    """One variant x task x length: its shape, the two indices with their intervals, and the flat bound."""

    task: str
    context_length: int
    shape: str
    primacy: tuple[float, float, float]  # start - middle: (difference, low, high), fractions
    recency: tuple[float, float, float]  # end - middle
    flat_within: float | None = None  # X (a fraction, whole points) when ``shape`` is FLAT


def classify(primacy: tuple[float, float, float], recency: tuple[float, float, float],
             flat_limit: float = FLAT_LIMIT) -> tuple[str, float | None]:
    """The shape from the two indices' intervals (see the module docstring), and the flat bound where flat."""
    start_up, end_up = primacy[1] > 0, recency[1] > 0
    if start_up and end_up:
        return U_CURVE, None
    if start_up or end_up:
        return (PRIMACY if start_up else RECENCY), None
    if primacy[2] < 0 or recency[2] < 0:
        return MIDDLE_BEST, None
    bound = flat_bound((primacy[1], primacy[2]), (recency[1], recency[2]), flat_limit=flat_limit)
    return (FLAT, bound) if bound is not None else (UNDECIDED, None)


def flat_bound(*intervals: tuple[float, float], flat_limit: float = FLAT_LIMIT) -> float | None:
    """X (a fraction, whole points rounded up) such that every ``(low, high)`` lies within +/- X, when X is at most
    ``flat_limit``; None when an interval reaches past it (then "flat" is not shown, only "not decided")."""
    reach = max(abs(x) for interval in intervals for x in interval)
    bound = math.ceil(round(reach * 100, 6)) / 100  # whole points, up; round() keeps 0.07 from reading 0.0700001
    return bound if bound <= flat_limit + 1e-9 else None


def depth_shapes(indices: pd.DataFrame, variant: str, flat_limit: float = FLAT_LIMIT) -> tuple[DepthShape, ...]:
    """The shape of each task x length of ``variant`` in ``position_indices`` rows; a row without a start, middle
    or end band tested is left out (no shape to read)."""
    rows = indices[indices["variant"].astype("str") == variant] if not indices.empty else indices
    out = []
    for row in rows.itertuples(index=False):
        primacy = (row.primacy, row.primacy_low, row.primacy_high)
        recency = (row.recency, row.recency_low, row.recency_high)
        if any(pd.isna(x) for x in (*primacy, *recency)):
            continue
        shape, bound = classify(primacy, recency, flat_limit)
        out.append(DepthShape(str(row.task), int(row.context_length), shape, tuple(map(float, primacy)),
                              tuple(map(float, recency)), bound))
    return tuple(out)

"""Binomial confidence intervals for retrieval accuracy (Wilson score, Newcombe), from statsmodels.

Wilson is used rather than the normal approximation because cells are small (often 5-20 trials)
and accuracies sit near 0% or 100%, where the normal interval leaves [0, 1] or collapses to a point.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint


def _alpha(confidence: float) -> float:
    """``1 - confidence``, refusing values outside (0, 1)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be between 0 and 1 (exclusive), got {confidence!r}")
    return 1.0 - confidence


def wilson_intervals(successes, n, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised Wilson score interval: arrays ``(low, high)`` of proportions in [0, 1].

    ``successes`` and ``n`` are array-likes of equal shape (or scalars); where ``n == 0`` both
    bounds are NaN. Raises ``ValueError`` for negative counts or ``successes > n``.
    Computed by statsmodels' ``proportion_confint(method="wilson")``.
    """
    k = np.asarray(successes, dtype=float)
    m = np.asarray(n, dtype=float)
    if np.any(k < 0) or np.any(m < 0) or np.any(k > m):
        raise ValueError("wilson_intervals: need 0 <= successes <= n for every cell")
    alpha = _alpha(confidence)
    empty = m == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        low, high = proportion_confint(k, np.where(empty, 1.0, m), alpha=alpha, method="wilson")
    # the formula gives exactly 0 / 1 at the ends only up to rounding: pin them
    low = np.where(k == 0, 0.0, np.clip(low, 0.0, 1.0))
    high = np.where(k == m, 1.0, np.clip(high, 0.0, 1.0))
    return np.where(empty, np.nan, low), np.where(empty, np.nan, high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` trials.

    ``wilson_interval(8, 10)`` is about ``(0.4902, 0.9433)``; ``n == 0`` gives ``(nan, nan)``.
    """
    low, high = wilson_intervals(successes, n, confidence)
    return float(low), float(high)


def add_wilson_columns(
    frame: pd.DataFrame,
    successes: str = "correct",
    n: str = "n",
    confidence: float = 0.95,
    low: str = "ci_low",
    high: str = "ci_high",
) -> pd.DataFrame:
    """Return a copy of ``frame`` with Wilson bounds of ``successes / n`` in columns ``low``, ``high``."""
    lows, highs = wilson_intervals(frame[successes].to_numpy(), frame[n].to_numpy(), confidence)
    return frame.assign(**{low: lows, high: highs})


def difference_interval(
    successes_a, n_a, successes_b, n_b, confidence: float = 0.95
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Difference of two proportions ``p_a - p_b`` with Newcombe's hybrid score interval.

    Returns arrays ``(difference, low, high)`` (all NaN where either ``n`` is 0). Newcombe's
    interval (his method 10) combines the two Wilson intervals, so it behaves at 0% and 100% where
    the normal approximation does not: ``low = d - sqrt((p_a - l_a)^2 + (u_b - p_b)^2)`` and
    ``high = d + sqrt((u_a - p_a)^2 + (p_b - l_b)^2)``. Computed by statsmodels'
    ``confint_proportions_2indep(method="newcomb")``.
    """
    k_a, m_a = np.asarray(successes_a, dtype=float), np.asarray(n_a, dtype=float)
    k_b, m_b = np.asarray(successes_b, dtype=float), np.asarray(n_b, dtype=float)
    k_a, m_a, k_b, m_b = np.broadcast_arrays(k_a, m_a, k_b, m_b)
    empty = (m_a == 0) | (m_b == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        diff = k_a / m_a - k_b / m_b
        low, high = confint_proportions_2indep(
            k_a, np.where(empty, 1.0, m_a), k_b, np.where(empty, 1.0, m_b),
            method="newcomb", compare="diff", alpha=_alpha(confidence),
        )
    return diff, np.where(empty, np.nan, low), np.where(empty, np.nan, high)

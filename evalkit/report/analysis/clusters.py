"""Intervals for accuracies that pool correlated trials: a design-effect (cluster-robust) Wilson interval.

Under ``values: per_sample`` (the default) every depth, length and layout of one sample shares its needle
value (or question) and its haystack stream, so those trials are not independent: a value the model misreads
is missed at every depth. A pooled rate's interval must count *samples*, not trials. Here the trials of one
*cluster* (same task, sample and trial seed: the seed is per sample under ``per_sample``, per trial under
``per_trial``) are treated as one unit:

- the cluster-robust variance of the pooled rate ``p = k / n`` is ``sum_g (k_g - p m_g)^2 / n^2`` (``k_g``
  right of the cluster's ``m_g`` trials; the ratio estimator's linearised variance, as in survey statistics),
- its *design effect* is that variance over the binomial one ``p (1 - p) / n``, kept within ``[1, n / G]``
  for ``G`` clusters (1: independent trials; ``n / G``: a cluster's trials all agree),
- the interval is Wilson's on the *effective* counts ``n / deff`` trials, ``p n / deff`` right (Kish's
  effective sample size; statsmodels' Wilson takes non-integer counts).

With one trial per cluster the design effect is exactly 1 and the interval is the plain Wilson one, so
per-cell intervals (one trial per sample in a cell) do not change. With a single cluster nothing measures
the spread between samples: the design effect is ``n`` (the sample counts once). When every trial agrees
(``p`` is 0 or 1) there is no spread to measure either and the design effect is 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.report.analysis.stats import wilson_intervals

CLUSTER_COLUMN = "_cluster"


def cluster_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per trial naming its cluster: its task, sample and trial seed (the columns the frame has).

    The seed tells the clusters apart under ``per_trial`` (each cell of a sample draws its own); under
    ``per_sample`` it is the sample's. A frame with neither ``sample`` nor ``seed`` makes each trial its own cluster.
    """
    columns = [c for c in ("task", "sample", "seed") if c in frame.columns]
    if not {"sample", "seed"} & set(columns):
        return pd.Series([f"\x1etrial{i}" for i in range(len(frame))], index=frame.index, dtype="object")
    labels = frame[columns[0]].astype("str")
    for column in columns[1:]:
        labels = labels + "\x1f" + frame[column].astype("str")
    return labels


def design_effect(correct, clusters) -> float:
    """Design effect of the pooled rate of 0/1 ``correct`` outcomes grouped by ``clusters`` (see the docstring).

    ``design_effect([1, 1, 0, 0], ["a", "a", "b", "b"]) == 2.0``: two samples, each right or wrong at both depths.
    """
    y = np.asarray(correct, dtype=float)
    n = y.size
    if n == 0:
        return 1.0
    p = float(y.mean())
    if p in (0.0, 1.0):
        return 1.0
    labels = pd.Series(np.asarray(clusters)).astype("str").to_numpy()
    _, inverse = np.unique(labels, return_inverse=True)
    k_g = np.bincount(inverse, weights=y)
    m_g = np.bincount(inverse).astype(float)
    groups = k_g.size
    if groups < 2:
        return float(n)
    robust = float(((k_g - p * m_g) ** 2).sum()) / n**2
    return float(min(max(robust / (p * (1.0 - p) / n), 1.0), n / groups))


def cluster_counts(trials: pd.DataFrame, keys: list[str], correct: str = "_correct") -> pd.DataFrame:
    """Per ``keys`` group of trial rows: ``n, correct, clusters, design_effect, n_effective, correct_effective``.

    ``trials`` holds one row per completed trial with a 0/1 ``correct`` column and the columns
    ``cluster_labels`` reads. The effective counts feed ``wilson_intervals`` or ``difference_interval``.
    """
    work = trials.assign(**{CLUSTER_COLUMN: cluster_labels(trials).to_numpy()})
    rows = []
    for key, group in work.groupby(keys, sort=True, observed=True):
        y = group[correct].to_numpy(dtype=float)
        deff = design_effect(y, group[CLUSTER_COLUMN].to_numpy())
        key = key if isinstance(key, tuple) else (key,)
        rows.append((*key, y.size, int(y.sum()), group[CLUSTER_COLUMN].nunique(), deff, y.size / deff,
                     y.sum() / deff))
    columns = [*keys, "n", "correct", "clusters", "design_effect", "n_effective", "correct_effective"]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"n": "int64", "correct": "int64", "clusters": "int64"})


def cluster_wilson(trials: pd.DataFrame, keys: list[str], correct: str = "_correct",
                   confidence: float = 0.95) -> pd.DataFrame:
    """``cluster_counts`` plus ``accuracy`` and the design-effect Wilson bounds ``ci_low``, ``ci_high``."""
    table = cluster_counts(trials, keys, correct)
    table["accuracy"] = table["correct"] / table["n"]
    table["ci_low"], table["ci_high"] = wilson_intervals(table["correct_effective"], table["n_effective"], confidence)
    return table


def cluster_wilson_interval(correct, clusters, confidence: float = 0.95) -> tuple[float, float]:
    """Design-effect Wilson interval ``(low, high)`` of one pooled rate (``(nan, nan)`` without trials)."""
    y = np.asarray(correct, dtype=float)
    deff = design_effect(y, clusters)
    low, high = wilson_intervals(y.sum() / deff, y.size / deff, confidence)
    return float(low), float(high)

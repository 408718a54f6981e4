"""The layout recommendation: which prompt layout to use and where a fact can safely go, per model.

Layouts are compared on the *same* trials (task, context length, depth and sample: the same needle in
the same haystack, and within one content condition: the same look-alikes, haystack order and needle variant;
content axes are never a layout to recommend, ``labels.prompt_layout_labels``), so each comparison is paired:
McNemar's exact test on the discordant pairs and a paired bootstrap interval of the accuracy difference. A depth
band is *reliable* when its accuracy is at least 95% and the lower end of its Wilson 95% interval at least 90%
(with every answer right that takes 35 trials in the band).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import binomtest, bootstrap

from evalkit.report.analysis.clusters import cluster_labels, cluster_wilson
from evalkit.report.analysis.indices import BANDS, band_of
from evalkit.report.analysis.stats import wilson_intervals
from evalkit.report.data.labels import CONTENT_AXES, axis_text, control_labels, prompt_layout_labels

RELIABLE_ACCURACY = 0.95
RELIABLE_LOWER_BOUND = 0.90
PAIR_KEYS: tuple[str, ...] = ("task", "context_length", "depth", "sample")
BOOTSTRAP_RESAMPLES = 4000


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs (binomial, p = 1/2).

    ``mcnemar_exact(1, 6) == 0.125``: 2 * (C(7,0) + C(7,1)) / 2**7. No discordant pair gives 1.0.
    Computed by scipy's exact binomial test on the discordant pairs.
    """
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, float(binomtest(min(b, c), n, 0.5).pvalue))


def paired_bootstrap(a, b, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0, clusters=None) -> tuple[float, float, float]:
    """``mean(a) - mean(b)`` for paired 0/1 outcomes with a percentile bootstrap interval over pairs.

    Resampling is scipy's ``bootstrap`` (percentile method, seeded); one pair has no spread to resample.
    ``clusters`` (one label per pair, e.g. ``clusters.cluster_labels``) resamples whole clusters instead: pairs
    pooled over a sample's depths share its needle, so the sample is the unit (with one pair per cluster this
    is the plain bootstrap over pairs).
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.size == 0:
        raise ValueError("paired_bootstrap: need two equally long, non-empty outcome arrays")
    diffs = x - y
    mean = float(diffs.mean())
    if diffs.size < 2 or np.all(diffs == diffs[0]):
        return mean, mean, mean
    rng = np.random.default_rng(seed)
    if clusters is not None:
        _, inverse = np.unique(pd.Series(np.asarray(clusters)).astype("str").to_numpy(), return_inverse=True)
        sums, sizes = np.bincount(inverse, weights=diffs), np.bincount(inverse).astype(float)
        if sizes.size < 2:
            return mean, float(diffs.min()), float(diffs.max())  # one sample: no spread between samples to resample
        if np.any(sizes > 1):
            result = bootstrap((sums, sizes), _ratio, paired=True, confidence_level=confidence,
                               n_resamples=resamples, method="percentile", rng=rng, vectorized=True)
            return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)
    result = bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", rng=rng, vectorized=True)
    return mean, float(result.confidence_interval.low), float(result.confidence_interval.high)


def _ratio(sums, sizes, axis=-1):
    """Pooled mean of resampled clusters: their summed differences over their pairs."""
    return sums.sum(axis=axis) / sizes.sum(axis=axis)


def layout_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials that carry a prompt layout, with ``layout`` (its label, content axes left out:
    ``labels.prompt_layout_labels``) and ``_correct`` (0/1) columns."""
    layouts = prompt_layout_labels(df)
    keep = (layouts != "").to_numpy() & (control_labels(df) == "").to_numpy() & (df["status"] == "ok").to_numpy()
    frame = df[keep]
    return frame.assign(layout=layouts[keep].to_numpy(), model=frame["model"].astype("str"),
                        _correct=frame["correct"].fillna(False).astype("int64"))


def layout_accuracy(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model x layout: ``n, correct, accuracy, ci_low, ci_high`` (design-effect Wilson over samples: a layout
    pools every depth and length of each sample) and ``design_effect``, best layout first within a model."""
    table = cluster_wilson(trials, ["model", "layout"])
    table = table[["model", "layout", "n", "correct", "accuracy", "ci_low", "ci_high", "design_effect"]]
    return table.sort_values(["model", "accuracy", "ci_low"], ascending=[True, False, False]).reset_index(drop=True)


def layout_pairs(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model: every other layout against the best one, on the trials both ran (paired).

    Columns: ``model, best, layout, pairs, best_accuracy, accuracy, difference`` (best minus layout),
    ``diff_low, diff_high`` (paired bootstrap 95%), ``best_only, layout_only`` (discordant pairs),
    ``p_value`` (McNemar exact).
    """
    rows = []
    accuracy = layout_accuracy(trials)
    for model, ranked in accuracy.groupby("model", sort=False):
        sub = trials[trials["model"] == model]
        # trials pair within one content condition (distractors, haystack order, needle variant)
        content = {f"_content_{a}": axis_text(sub, a).to_numpy() for a in CONTENT_AXES if a in sub.columns}
        sub = sub.assign(_cluster=cluster_labels(sub).to_numpy(), **content)
        wide = sub.pivot_table(index=[*PAIR_KEYS, *content, "_cluster"], columns="layout", values="_correct",
                               aggfunc="first")
        best = str(ranked.iloc[0]["layout"])
        for layout in ranked["layout"].iloc[1:]:
            both = wide[[best, layout]].dropna()
            if both.empty:
                continue
            x, y = both[best].to_numpy(dtype=int), both[layout].to_numpy(dtype=int)
            diff, low, high = paired_bootstrap(x, y, clusters=both.index.get_level_values("_cluster"))
            b, c = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
            rows.append(dict(model=model, best=best, layout=str(layout), pairs=len(both), best_accuracy=x.mean(),
                             accuracy=y.mean(), difference=diff, diff_low=low, diff_high=high, best_only=b,
                             layout_only=c, p_value=mcnemar_exact(b, c)))
    columns = ["model", "best", "layout", "pairs", "best_accuracy", "accuracy", "difference", "diff_low",
               "diff_high", "best_only", "layout_only", "p_value"]
    return pd.DataFrame(rows, columns=columns)


def band_reliability(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model x layout x task x depth band (all lengths pooled): accuracy, design-effect Wilson CI over
    samples (``clusters.py``), ``reliable``."""
    frame = trials.assign(band=trials["depth"].map(band_of))
    keys = ["model", "layout", "task", "band"]
    depths = frame.groupby(keys, sort=False).agg(depth_min=("depth", "min"), depth_max=("depth", "max")).reset_index()
    table = depths.merge(cluster_wilson(frame, keys).drop(columns=["clusters", "n_effective", "correct_effective"]),
                         on=keys)
    table["reliable"] = (table["accuracy"] >= RELIABLE_ACCURACY) & (table["ci_low"] >= RELIABLE_LOWER_BOUND)
    order = {b.name: i for i, b in enumerate(BANDS)}
    table = table.assign(_rank=table["band"].map(order)).sort_values(["model", "layout", "task", "_rank"])
    return table.drop(columns="_rank").reset_index(drop=True)


def trials_for_reliable_band() -> int:
    """Fewest trials in a band that can pass as reliable (all correct, Wilson lower bound >= 90%)."""
    n = 1
    while wilson_intervals(n, n)[0] < RELIABLE_LOWER_BOUND:
        n += 1
    return n

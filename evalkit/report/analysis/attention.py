"""Attention tables of a report: needle mass by depth, by layer, by position, per head, and as a predictor.

Inputs are the trial records (``load_results``) and each trial's arrays (``evalkit/store/format.py``).
Unless a table says otherwise it reads row 0, the last prompt token: the step that produces the first answer
token. "Needle mass" is the attention probability that row puts on the needle's tokens.

AUROC (``auroc``) is the Mann-Whitney statistic: the probability that a random correct trial has a larger
score than a random wrong one, ties counting one half; NaN when either class is empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.attention.regions import REGION_SINK, bin_name
from evalkit.store.attention_arrays import attention_for_records, copy_events
from evalkit.types import TrialAttention
from evalkit.report.data.labels import placement_trials

# two-sided 95% Student t quantiles for 1..30 degrees of freedom (beyond: 1.96 + 2.4 / df, within 0.002)
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
        2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
SERIES = ["model", "task"]
TOP_HEADS = 10


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with ``df`` degrees of freedom (NaN for df < 1)."""
    if df < 1:
        return float("nan")
    return _T95[df - 1] if df <= len(_T95) else 1.96 + 2.4 / df


def mean_interval(values) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean with its 95% t interval (NaN bounds with fewer than 2 values)."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(x.mean())
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = t95(len(x) - 1) * float(x.std(ddof=1)) / np.sqrt(len(x))
    return mean, mean - half, mean + half


def auroc(scores, labels) -> float:
    """Area under the ROC curve of ``scores`` for boolean ``labels`` (Mann-Whitney U / (n1 * n0), midranks)."""
    s = np.asarray(scores, dtype=float)
    y = np.asarray(labels, dtype=bool)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def auroc_columns(scores: np.ndarray, labels) -> np.ndarray:
    """``auroc`` of every column of ``scores [trials, k]`` at once -> [k]."""
    y = np.asarray(labels, dtype=bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return np.full(scores.shape[1], np.nan)
    ranks = pd.DataFrame(scores).rank(method="average", axis=0).to_numpy()
    return (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)


@dataclass(frozen=True, eq=False)
class AttentionData:
    """Completed placement trials that have attention arrays, with their arrays in the same order."""

    trials: pd.DataFrame  # record columns; index 0..n-1
    arrays: tuple[TrialAttention, ...]

    def needle_mass(self) -> np.ndarray:
        """[trials, layers, heads] needle mass of row 0 (one model per call: shapes must agree)."""
        return np.stack([a.region("needle")[:, :, 0] for a in self.arrays])

    def subset(self, mask) -> AttentionData:
        keep = np.asarray(mask, dtype=bool)
        return AttentionData(self.trials[keep].reset_index(drop=True),
                             tuple(a for a, k in zip(self.arrays, keep) if k))

    def series(self):
        """``((model, task), AttentionData)`` per model x task."""
        for key, rows in self.trials.groupby(SERIES, sort=True):
            yield key, self.subset(self.trials.index.isin(rows.index))


def attention_data(records: pd.DataFrame) -> AttentionData | None:
    """The attention of ``records``' completed placement trials; None when none has an array."""
    trials = placement_trials(records)
    trials = trials[(trials["status"] == "ok").to_numpy()].reset_index(drop=True)
    if trials.empty:
        return None
    arrays = attention_for_records(trials)
    keep = np.array([a is not None for a in arrays])
    if not keep.any():
        return None
    return AttentionData(trials[keep].reset_index(drop=True), tuple(a for a in arrays if a is not None))


def trial_table(data: AttentionData) -> pd.DataFrame:
    """One row per trial: needle mass (row 0, mean over layers and heads), needle tokens, mass per needle
    token relative to a uniform spread over the keys (``needle_mass / (needle_tokens / prompt_tokens)``)."""
    rows = []
    for record, att in zip(data.trials.itertuples(index=False), data.arrays):
        start, end = att.spans[att.region_names.index("needle")]
        mass = float(np.nanmean(att.region("needle")[:, :, 0]))
        share = (end - start) / att.prompt_tokens  # what the needle would get if row 0 spread evenly
        rows.append((record.model, record.task, int(record.context_length), float(record.depth),
                     float(record.achieved_depth), bool(record.correct), int(end - start), mass,
                     mass / share if share > 0 else float("nan")))
    return pd.DataFrame(rows, columns=["model", "task", "context_length", "depth", "achieved_depth", "correct",
                                       "needle_tokens", "needle_mass", "needle_mass_vs_uniform"])


def needle_mass_table(data: AttentionData) -> pd.DataFrame:
    """Per model, task, length and depth: mean needle mass and mass relative to uniform, 95% t intervals."""
    rows = []
    for key, cell in trial_table(data).groupby([*SERIES, "context_length", "depth"], sort=True):
        mass = mean_interval(cell["needle_mass"])
        relative = mean_interval(cell["needle_mass_vs_uniform"])
        rows.append((*key, len(cell), *mass, *relative))
    return pd.DataFrame(rows, columns=[*SERIES, "context_length", "depth", "n", "needle_mass", "mass_low",
                                       "mass_high", "vs_uniform", "vs_uniform_low", "vs_uniform_high"])


def layer_depth_table(data: AttentionData) -> pd.DataFrame:
    """Per model, task, length, depth and layer: needle mass of row 0, mean over heads and trials."""
    rows = []
    for (model, task), series in data.series():
        mass = series.needle_mass().mean(2)  # [trials, layers]
        frame = series.trials[["context_length", "depth"]].reset_index(drop=True)
        for (length, depth), cell in frame.groupby(["context_length", "depth"], sort=True):
            per_layer = np.nanmean(mass[cell.index.to_numpy()], 0)
            rows += [(model, task, int(length), float(depth), layer, float(v)) for layer, v in enumerate(per_layer)]
    return pd.DataFrame(rows, columns=[*SERIES, "context_length", "depth", "layer", "needle_mass"])


def bin_table(data: AttentionData) -> pd.DataFrame:
    """Per model, task and length: mean mass of row 0 by position in prompt order (sink, preamble, each
    haystack bin, question), averaged over layers, heads and trials; ``share`` of all attention and
    ``share_without_sink`` = mass / (1 - sink mass), the same position's share of the attention left after the sink."""
    rows = []
    for (model, task), series in data.series():
        bins = series.arrays[0].bins
        names = [REGION_SINK, "preamble", *(bin_name(i) for i in range(bins)), "question"]
        same = [a.bins == bins for a in series.arrays]  # a report may mix runs with other bin counts
        mass = np.stack([[np.nanmean(a.region(n)[:, :, 0]) for n in names] for a, s in zip(series.arrays, same) if s])
        without = mass / (1.0 - mass[:, :1])  # [trials, positions]
        lengths = series.trials["context_length"].to_numpy()[np.array(same)]
        for length in sorted(set(lengths.tolist())):
            pick = lengths == length
            for i, name in enumerate(names):
                rows.append((model, task, int(length), i, name, float(mass[pick, i].mean()),
                             float(without[pick, i].mean()), int(pick.sum())))
    return pd.DataFrame(rows, columns=[*SERIES, "context_length", "position", "region", "share",
                                       "share_without_sink", "n"])


def head_table(data: AttentionData) -> pd.DataFrame:
    """Per model, task, layer and head: how well the head's needle mass (row 0) separates correct from wrong
    trials (``auroc``, all lengths and depths pooled) and Wu et al. 2024's retrieval score.

    ``retrieval_score`` = copy events / eligible rows, pooled over trials: an eligible row is a captured row
    whose predicted (generated) token occurs in the needle; a copy event is such a row whose head puts its
    largest weight on that same token inside the needle. Wu et al. divide by the needle's length over a whole
    generated answer; with only the first ``1 + decode_steps`` rows captured, eligible rows are the fair
    denominator. NaN where no row is eligible.
    """
    frames = []
    for (model, task), series in data.series():
        mass = series.needle_mass()  # [trials, layers, heads]
        trials, layers, heads = mass.shape
        correct = series.trials["correct"].to_numpy(dtype=bool)
        flat = mass.reshape(trials, -1)
        copies = sum(copy_events(a).sum(2) for a in series.arrays)  # [layers, heads]
        eligible = sum(int(a.row_in_needle.sum()) for a in series.arrays)
        with np.errstate(invalid="ignore"):
            frames.append(pd.DataFrame({
                "model": model, "task": task,
                "layer": np.repeat(np.arange(layers), heads), "head": np.tile(np.arange(heads), layers),
                "auroc": auroc_columns(flat, correct),
                "mass_correct": flat[correct].mean(0) if correct.any() else np.nan,
                "mass_wrong": flat[~correct].mean(0) if (~correct).any() else np.nan,
                "n_correct": int(correct.sum()), "n_wrong": int((~correct).sum()),
                "retrieval_score": (copies.reshape(-1) / eligible) if eligible else np.nan,
                "copy_events": copies.reshape(-1), "eligible_rows": eligible,
            }))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# exact null distribution of the Mann-Whitney U up to this many (correct x wrong) pairs; normal beyond
EXACT_CHANCE_MAX_PAIRS = 2500


def chance_auroc(n_correct: int, n_wrong: int, tests: int, alpha: float = 0.05) -> float:
    """The AUROC one of ``tests`` heads reaches by chance with probability ``alpha`` (Bonferroni): the smallest
    AUROC that a score with no effect reaches with probability at most ``alpha / tests``. Always in [0, 1].

    Small samples use the exact distribution of the Mann-Whitney U without ties; when even a perfect AUROC
    is more likely than ``alpha / tests`` the answer is 1.0 (n too small to tell a head from chance). Large
    samples use the normal approximation 0.5 + z * sqrt((n1 + n0 + 1) / (12 n1 n0)), capped at 1.
    """
    from statistics import NormalDist

    if n_correct < 1 or n_wrong < 1 or tests < 1:
        return float("nan")
    tail = alpha / tests
    pairs = n_correct * n_wrong
    if pairs <= EXACT_CHANCE_MAX_PAIRS:
        counts = mann_whitney_counts(n_correct, n_wrong)  # counts[u]: orderings with U = u
        total, above = sum(counts), 0
        for u in range(pairs, -1, -1):  # walk down from the top while P(U >= u) stays within the tail
            if (above + counts[u]) / total > tail:
                return 1.0 if u == pairs else (u + 1) / pairs
            above += counts[u]
        return 0.0
    spread = np.sqrt((n_correct + n_wrong + 1) / (12.0 * pairs))
    return float(min(1.0, 0.5 + NormalDist().inv_cdf(1.0 - tail) * spread))


def mann_whitney_counts(n1: int, n0: int) -> list[int]:
    """``counts[u]``: how many of the C(n1 + n0, n1) orderings of two untied samples give U = u.

    The coefficients of the Gaussian binomial prod_{i=1..m} (1 - q^(k+i)) / (1 - q^i), m = min, k = max.
    """
    m, k = min(n1, n0), max(n1, n0)
    poly = [1] + [0] * (m * k)
    for i in range(1, m + 1):
        for u in range(len(poly) - 1, k + i - 1, -1):  # times (1 - q^(k+i))
            poly[u] -= poly[u - k - i]
        for u in range(i, len(poly)):  # divided by (1 - q^i): a running sum with stride i
            poly[u] += poly[u - i]
    return poly


def top_heads(heads: pd.DataFrame, column: str, n: int = TOP_HEADS) -> pd.DataFrame:
    """The ``n`` heads with the largest ``column`` per model x task (NaN last)."""
    if heads.empty:
        return heads
    ranked = heads.sort_values([*SERIES, column, "layer", "head"], ascending=[True, True, False, True, True],
                               na_position="last")
    return ranked.groupby(SERIES, sort=True).head(n).reset_index(drop=True)


def prediction_table(data: AttentionData) -> pd.DataFrame:
    """Does needle mass predict success? Per model, task and length (and ``all`` lengths): AUROC of the trial's
    needle mass (row 0, mean over layers and heads) for correct vs wrong, with the counts and both means."""
    rows = []
    table = trial_table(data)
    for (model, task), series in table.groupby(SERIES, sort=True):
        groups = [(str(length), cell) for length, cell in series.groupby("context_length", sort=True)]
        for label, cell in [*groups, ("all", series)]:
            correct = cell["correct"].to_numpy(dtype=bool)
            mass = cell["needle_mass"].to_numpy()
            rows.append((model, task, label, int(correct.sum()), int((~correct).sum()), auroc(mass, correct),
                         float(mass[correct].mean()) if correct.any() else float("nan"),
                         float(mass[~correct].mean()) if (~correct).any() else float("nan")))
    return pd.DataFrame(rows, columns=[*SERIES, "context_length", "n_correct", "n_wrong", "auroc",
                                       "mass_correct", "mass_wrong"])

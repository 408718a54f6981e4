"""Attention per document (documents tasks): by document position, gold minus distractor, gold rank vs correctness.

Inputs are ``attention.AttentionData`` (completed placement trials with arrays). As everywhere in the attention
report, a document's mass is row 0's (the last prompt token, which produces the first answer token) attention on
that document's tokens (its ``doc_NN`` region), mean over layers and heads.

- *By document position*: the mean mass on the document at each position over all trials (Found in the Middle's
  attention U-curve over documents), and split by whether the gold or a distractor sits there.
- *Gold minus distractor* (FiM's calibration in spirit): per gold position p, the gold document's mass at p minus
  the mass a distractor gets at p, from the trials of the same question (sample) with the gold elsewhere. Pairs
  are matched on model, task, run, layout, context length and sample; the interval is a 95% t interval over them.
- *Gold rank*: 1 + the number of documents with more mass than the gold one (1 = the gold is the top-attended
  document). Accuracy when it is top vs not (Wilson, Newcombe for the difference) and the AUROC of gold mass and
  of gold rank (lower rank = higher score) for correctness. Pooled over positions, so position effects mix in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.report.analysis.attention import (
    SERIES,
    AttentionData,
    auroc,
    mean_interval,
)
from evalkit.report.analysis.clusters import cluster_labels, cluster_wilson_interval, design_effect
from evalkit.report.analysis.stats import difference_interval

PAIR_KEYS = ["model", "task", "run_dir", "layout", "context_length", "sample"]
DOCUMENT_COLUMNS = [*PAIR_KEYS, "trial", "documents_total", "gold_document_index", "position", "mass", "is_gold",
                    "correct"]


def document_masses(att) -> np.ndarray:
    """[documents] row-0 mass on each document of one trial, mean over layers and heads."""
    return np.nanmean(att.mass[:, :, 0, att.document_slice], axis=(0, 1))  # [layers, heads, docs] -> [docs]


def document_mass_table(data: AttentionData) -> pd.DataFrame:
    """One row per trial x document position (trials without documents left out). Columns ``DOCUMENT_COLUMNS``."""
    frames = []
    trials = data.trials.assign(layout=data.trials["layout"].astype("str") if "layout" in data.trials else "",
                                run_dir=data.trials["run_dir"].astype("str") if "run_dir" in data.trials else "")
    for i, (record, att) in enumerate(zip(trials.to_dict("records"), data.arrays)):
        gold = record.get("gold_document_index")
        if att.documents == 0 or gold is None or pd.isna(gold):
            continue
        masses = document_masses(att)
        frames.append(pd.DataFrame({
            **{k: record[k] for k in PAIR_KEYS}, "trial": i, "documents_total": att.documents,
            "gold_document_index": int(gold), "position": np.arange(att.documents), "mass": masses,
            "is_gold": np.arange(att.documents) == int(gold), "correct": bool(record["correct"])}))
    if not frames:
        return pd.DataFrame(columns=DOCUMENT_COLUMNS)
    frame = pd.concat(frames, ignore_index=True)
    for name in ("model", "task"):
        frame[name] = frame[name].astype("str")
    return frame[DOCUMENT_COLUMNS]


def attention_by_position(table: pd.DataFrame) -> pd.DataFrame:
    """Per model x task x K x document position: mean mass over all trials with its 95% t interval, and the mean
    where the gold document sits there (``gold_mass``) and where a distractor does (``distractor_mass``)."""
    rows = []
    for key, cells in table.groupby([*SERIES, "documents_total", "position"], sort=True):
        mean, low, high = mean_interval(cells["mass"])
        gold, other = cells.loc[cells["is_gold"], "mass"], cells.loc[~cells["is_gold"], "mass"]
        rows.append((*key, len(cells), mean, low, high, len(gold), gold.mean() if len(gold) else np.nan,
                     other.mean() if len(other) else np.nan))
    return pd.DataFrame(rows, columns=[*SERIES, "documents_total", "position", "n", "mass", "mass_low", "mass_high",
                                       "n_gold", "gold_mass", "distractor_mass"])


def gold_minus_distractor(table: pd.DataFrame) -> pd.DataFrame:
    """Per model x task x K x gold position p: gold mass at p minus the same question's distractor mass at p.

    Per pair (``PAIR_KEYS``) with a trial whose gold is at p: that trial's mass at p, minus the mean mass at p
    of the pair's trials whose gold is elsewhere. ``n`` = pairs with both; ``difference`` their mean, 95% t interval.
    """
    rows = []
    for key, series in table.groupby([*SERIES, "documents_total"], sort=True):
        for p in sorted(series.loc[series["is_gold"], "position"].unique()):
            at_p = series[series["position"] == p]
            gold = at_p[at_p["is_gold"]].groupby(PAIR_KEYS)["mass"].mean()
            other = at_p[~at_p["is_gold"]].groupby(PAIR_KEYS)["mass"].mean()
            both = pd.concat([gold.rename("gold"), other.rename("other")], axis=1, join="inner")
            diff, low, high = mean_interval(both["gold"] - both["other"])
            rows.append((*key, int(p), len(both), float(both["gold"].mean()) if len(both) else np.nan,
                         float(both["other"].mean()) if len(both) else np.nan, diff, low, high))
    return pd.DataFrame(rows, columns=[*SERIES, "documents_total", "gold_document_index", "n", "gold_mass",
                                       "distractor_mass", "difference", "diff_low", "diff_high"])


def gold_ranks(table: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: model, task, gold position, gold mass, ``gold_rank`` (1 = most attended), correct."""
    gold = table[table["is_gold"]].set_index("trial")
    above = table.merge(gold[["mass"]].rename(columns={"mass": "gold"}), left_on="trial", right_index=True)
    rank = (above["mass"] > above["gold"]).groupby(above["trial"]).sum() + 1
    return gold.assign(gold_rank=rank.reindex(gold.index).astype("int64"))[
        [*SERIES, "sample", "documents_total", "gold_document_index", "mass", "gold_rank", "correct"]].reset_index()


def gold_rank_table(table: pd.DataFrame) -> pd.DataFrame:
    """Per model x task: does the gold document's attention rank predict correctness?

    Columns: ``n_top``, ``correct_top``, ``accuracy_top`` (+ ``top_low``/``top_high``: Wilson counting questions,
    ``clusters.py``, since one question is asked at several gold positions) for trials whose gold
    document is the top-attended one; the same with ``_other`` for the rest; ``difference`` (top minus other, with
    Newcombe ``diff_low``/``diff_high``); ``auroc_mass`` (gold mass for correct vs wrong), ``auroc_rank`` (score =
    minus the rank); ``mean_rank_correct``, ``mean_rank_wrong``.
    """
    rows = []
    for key, trials in gold_ranks(table).groupby(SERIES, sort=True):
        top, right = (trials["gold_rank"] == 1).to_numpy(), trials["correct"].to_numpy(dtype=bool)
        n_top, k_top = int(top.sum()), int(right[top].sum())
        n_other, k_other = int((~top).sum()), int(right[~top].sum())
        # a question is asked at every gold position: each side's interval counts questions (clusters.py)
        clusters = cluster_labels(trials).to_numpy()
        deff_top, deff_other = design_effect(right[top], clusters[top]), design_effect(right[~top], clusters[~top])
        diff = k_top / n_top - k_other / n_other if n_top and n_other else np.nan
        _, low, high = (float(v) for v in difference_interval(k_top / deff_top, n_top / deff_top,
                                                               k_other / deff_other, n_other / deff_other))
        rows.append((*key, n_top, k_top, k_top / n_top if n_top else np.nan,
                     *cluster_wilson_interval(right[top], clusters[top]), n_other, k_other,
                     k_other / n_other if n_other else np.nan, *cluster_wilson_interval(right[~top], clusters[~top]),
                     diff, low, high, auroc(trials["mass"], right), auroc(-trials["gold_rank"].to_numpy(float), right),
                     float(trials.loc[right, "gold_rank"].mean()) if right.any() else np.nan,
                     float(trials.loc[~right, "gold_rank"].mean()) if (~right).any() else np.nan))
    return pd.DataFrame(rows, columns=[*SERIES, "n_top", "correct_top", "accuracy_top", "top_low", "top_high",
                                       "n_other", "correct_other", "accuracy_other", "other_low", "other_high",
                                       "difference", "diff_low", "diff_high", "auroc_mass", "auroc_rank",
                                       "mean_rank_correct", "mean_rank_wrong"])

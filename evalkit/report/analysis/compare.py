"""Side-by-side comparison of variants (models, layouts, runs) on the same grid, and control rates.

Differences are ``variant - baseline`` in accuracy (fractions: -0.25 = 25 points worse) with
Newcombe's 95% interval; only cells that both variants tested are compared. Lengths pair on the report's length
axis (``report/data/lengths.py``): tokens, or the fraction of each model's window, where each side keeps its own
tokens (``context_length`` and ``baseline_context_length``).
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.analysis.indices import completed_trials, pooled_accuracy
from evalkit.report.data.labels import CONTROLS, add_variants, control_labels, variant_order
from evalkit.report.data.lengths import FRACTION, TOKENS, length_axis
from evalkit.report.analysis.clusters import cluster_counts
from evalkit.report.analysis.stats import add_wilson_columns, difference_interval

DIFF_COLUMNS: tuple[str, ...] = (
    "variant", "baseline", "n", "accuracy", "baseline_n", "baseline_accuracy",
    "difference", "diff_low", "diff_high",
)


def pick_baseline(df: pd.DataFrame, baseline: str | None = None) -> str:
    """``baseline`` if ``df`` holds that variant, else the first variant (see ``add_variants``)."""
    variants = variant_order(df)
    if baseline is None:
        return variants[0]
    if baseline not in variants:
        raise ValueError(f"unknown baseline {baseline!r}; the variants are: {', '.join(variants)}")
    return baseline


def _with_difference(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Add ``baseline``, ``accuracy``s and the Newcombe ``difference`` to a table of paired counts.

    The interval uses the ``*_effective`` counts (design effect of a sample's pooled cells) where the table has them.
    """
    effective = "n_effective" in table.columns
    names = [f"{c}_effective" if effective else c for c in ("correct", "n", "baseline_correct", "baseline_n")]
    _, low, high = difference_interval(*(table[c] for c in names))
    return table.assign(
        baseline=baseline, accuracy=table["correct"] / table["n"],
        baseline_accuracy=table["baseline_correct"] / table["baseline_n"],
        difference=table["correct"] / table["n"] - table["baseline_correct"] / table["baseline_n"],
        diff_low=low, diff_high=high,
    )


def _carried(axis: str) -> list[str]:
    """The token columns each side keeps where lengths pair on the window fraction (none on tokens)."""
    return [TOKENS, f"baseline_{TOKENS}"] if axis == FRACTION else []


def _paired_cells(frame: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Per non-baseline variant x task x length x depth: its counts next to the baseline's (shared cells)."""
    axis = length_axis(frame)
    keys = ["task", axis, "depth"]
    tokens = _carried(axis)[:1]  # one model's fraction is one token count: a key that splits no cell
    cells = pooled_accuracy(completed_trials(frame), ["variant", *keys, *tokens])
    cells = cells[["variant", *keys, *tokens, "n", "correct"]]
    base = cells[cells["variant"] == baseline].drop(columns="variant")
    renames = {"n": "baseline_n", "correct": "baseline_correct"}
    if tokens:  # the baseline's own tokens at the same fraction
        renames[TOKENS] = f"baseline_{TOKENS}"
    base = base.rename(columns=renames)
    return cells[cells["variant"] != baseline].merge(base, on=keys, how="inner")


def comparison_table(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per task x context length x depth and non-baseline variant: its accuracy minus the baseline's.

    Columns: ``variant, baseline, task, context_length, depth, n, accuracy, baseline_n,
    baseline_accuracy, difference, diff_low, diff_high``; where the lengths are window fractions,
    ``context_fraction, context_length, baseline_context_length`` in place of ``context_length``.
    Empty when ``df`` holds one variant.
    """
    frame = df if "variant" in df.columns else add_variants(df)
    baseline = pick_baseline(frame, baseline)
    axis = length_axis(frame)
    keys = ["task", axis, "depth"]
    table = _with_difference(_paired_cells(frame, baseline), baseline)
    return _order(table[[*DIFF_COLUMNS[:2], *keys[:2], *_carried(axis), "depth", *DIFF_COLUMNS[2:]]], frame, keys)


def length_comparison(df: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """Per task x context length and non-baseline variant: accuracy over all depths minus the baseline's.

    Only depths both variants tested count, so a grid difference does not pass for a model difference.
    Columns as ``comparison_table`` without ``depth``.
    """
    frame = df if "variant" in df.columns else add_variants(df)
    baseline = pick_baseline(frame, baseline)
    axis = length_axis(frame)
    keys = ["task", axis]
    cells = _paired_cells(frame, baseline)
    pooled = cells.groupby(["variant", *keys, *_carried(axis)], sort=False).agg(
        n=("n", "sum"), correct=("correct", "sum"),
        baseline_n=("baseline_n", "sum"), baseline_correct=("baseline_correct", "sum")).reset_index()
    # each side pools a sample's depths (one needle): its interval counts samples (clusters.py)
    trials = completed_trials(frame)
    shared = trials.merge(cells[[*keys, "depth"]].drop_duplicates(), on=keys + ["depth"])
    counts = cluster_counts(shared, ["variant", *keys])[["variant", *keys, "n_effective", "correct_effective"]]
    base = counts[counts["variant"] == baseline].drop(columns="variant").rename(
        columns={"n_effective": "baseline_n_effective", "correct_effective": "baseline_correct_effective"})
    pooled = pooled.merge(counts, on=["variant", *keys], how="left").merge(base, on=keys, how="left")
    table = _with_difference(pooled, baseline)
    return _order(table[[*DIFF_COLUMNS[:2], *keys, *_carried(axis), *DIFF_COLUMNS[2:]]], frame, keys)


def _order(table: pd.DataFrame, frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Rows in variant order (baseline first), then by ``keys``."""
    rank = {v: i for i, v in enumerate(variant_order(frame))}
    table = table.assign(_rank=table["variant"].map(rank)).sort_values(["_rank", *keys])
    return table.drop(columns="_rank").reset_index(drop=True)


def control_rates(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x control kind: share of control trials answered correctly, design-effect Wilson 95% CI
    over samples (``clusters.py``; plain Wilson when each sample has one such control, as the oracle does).

    Control trials carry a ``control``: ``closed_book`` (no needle in the prompt: what the
    model knows or guesses) and ``oracle`` (the needle without the haystack: the ceiling). Other
    control kinds are listed too. Columns: ``variant, task, control, n, correct, accuracy, ci_low,
    ci_high, skipped``. Empty when no record is a control.
    """
    frame = df if "variant" in df.columns else add_variants(df)
    controls = control_labels(frame)
    frame = frame[(controls != "").to_numpy()].assign(control=controls[controls != ""])
    columns = ["variant", "task", "control", "n", "correct", "accuracy", "ci_low", "ci_high", "skipped"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    ok = (frame["status"] == "ok").to_numpy()
    work = frame.assign(variant=frame["variant"].astype("str"), _ok=ok,
                        _correct=ok & frame["correct"].fillna(False).to_numpy(dtype=bool))
    table = work.groupby(["variant", "task", "control"], sort=True).agg(
        n=("_ok", "sum"), total=("_ok", "size"), correct=("_correct", "sum")).reset_index()
    table["n"], table["correct"] = table["n"].astype("int64"), table["correct"].astype("int64")
    table["accuracy"] = table["correct"] / table["n"].where(table["n"] > 0)
    table["skipped"] = table["total"] - table["n"]
    # closed-book and dummy controls pool a sample's lengths (and depths): the interval counts samples
    done = work[work["_ok"]].assign(_correct=lambda f: f["_correct"].astype("int64"))
    effective = cluster_counts(done, ["variant", "task", "control"])[
        ["variant", "task", "control", "n_effective", "correct_effective"]]
    table = table.merge(effective, on=["variant", "task", "control"], how="left").fillna(
        {"n_effective": 0.0, "correct_effective": 0.0})
    known = {name: i for i, name in enumerate(CONTROLS)}
    table = table.assign(_rank=table["control"].map(lambda c: known.get(c, len(known))))
    table = table.sort_values(["variant", "task", "_rank", "control"])
    return add_wilson_columns(table, successes="correct_effective", n="n_effective")[columns].reset_index(drop=True)

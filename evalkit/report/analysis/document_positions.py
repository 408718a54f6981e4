"""Accuracy by gold document position (documents tasks), paired comparisons between positions, the curve's shape.

Every position of a documents task asks the same questions (sample s is one question, its gold document moved),
so positions are compared on paired trials, matched on variant, task, context length and sample: McNemar's exact
test on the discordant pairs and a paired bootstrap interval of the accuracy difference (``recommend.py``).

Comparisons per variant x task x length (positions are 0-based gold indices):

- ``first_vs_middle``: the first tested position against the *middle* one, the tested interior position nearest
  (K - 1) / 2 (ties: the earlier); ``last_vs_middle`` likewise;
- ``best_vs_worst``: the position of highest accuracy against the lowest (picked on the same trials, so its
  p-value is optimistic; the shape below does not use it).

The shape (``curve_shape``) is read from the two middle comparisons at ``ALPHA``: ``u_curve`` when both ends beat
the middle, ``primacy`` / ``recency`` when one does, ``middle_best`` when the middle beats an end and neither end
beats it, ``flat`` when no comparison is significant; ``undecided`` without three tested positions.
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.analysis.recommend import mcnemar_exact, paired_bootstrap
from evalkit.report.analysis.stats import add_wilson_columns
from evalkit.report.data.documents import document_trials

ALPHA = 0.05
SERIES = ["variant", "task", "context_length"]
POSITION_COLUMNS = [*SERIES, "documents_total", "gold_document_index", "n", "correct", "accuracy", "ci_low",
                    "ci_high"]
PAIR_COLUMNS = [*SERIES, "documents_total", "comparison", "position_a", "position_b", "pairs", "accuracy_a",
                "accuracy_b", "difference", "diff_low", "diff_high", "a_only", "b_only", "p_value"]
U_CURVE, PRIMACY, RECENCY, MIDDLE_BEST, FLAT, UNDECIDED = (
    "u_curve", "primacy", "recency", "middle_best", "flat", "undecided")


def _trials(df: pd.DataFrame) -> pd.DataFrame:
    frame = document_trials(df)
    return frame.assign(variant=frame["variant"].astype("str")) if "variant" in frame.columns else \
        frame.assign(variant=frame["model"].astype("str"))


def document_position_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x length x gold position: ``n``, ``correct``, ``accuracy`` and its Wilson 95% interval.

    Only completed placement trials of documents tasks count (controls are ``control_rates``). Columns:
    ``POSITION_COLUMNS`` (``gold_document_index`` 0-based). Empty when no task has documents.
    """
    frame = _trials(df)
    if frame.empty:
        return pd.DataFrame(columns=POSITION_COLUMNS)
    keys = [*SERIES, "documents_total", "gold_document_index"]
    table = frame.groupby(keys, sort=True).agg(n=("_correct", "size"), correct=("_correct", "sum")).reset_index()
    table["accuracy"] = table["correct"] / table["n"]
    return add_wilson_columns(table)[POSITION_COLUMNS]


def middle_position(positions: list[int], total: int) -> int | None:
    """The tested interior position nearest ``(total - 1) / 2`` (ties: the earlier); None with fewer than 3."""
    ordered = sorted(positions)
    if len(ordered) < 3:
        return None
    centre = (total - 1) / 2
    return min(ordered[1:-1], key=lambda p: (abs(p - centre), p))


def _pair(wide: pd.DataFrame, a: int, b: int) -> dict:
    """Paired comparison of positions ``a`` and ``b`` over the samples both ran."""
    both = wide[[a, b]].dropna()
    x, y = both[a].to_numpy(dtype=int), both[b].to_numpy(dtype=int)
    if len(both) == 0:
        nan = float("nan")
        return dict(pairs=0, accuracy_a=nan, accuracy_b=nan, difference=nan, diff_low=nan, diff_high=nan,
                    a_only=0, b_only=0, p_value=nan)
    diff, low, high = paired_bootstrap(x, y)
    if len(both) < 2:  # one pair has no spread: its "interval" would be the point itself
        low = high = float("nan")
    a_only, b_only = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    return dict(pairs=len(both), accuracy_a=float(x.mean()), accuracy_b=float(y.mean()), difference=diff,
                diff_low=low, diff_high=high, a_only=a_only, b_only=b_only, p_value=mcnemar_exact(a_only, b_only))


def position_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x length: first vs middle, last vs middle, best vs worst position (paired by sample).

    Columns: ``PAIR_COLUMNS``; ``difference`` = accuracy at ``position_a`` minus ``position_b`` on the paired
    samples, ``diff_low`` / ``diff_high`` its paired bootstrap 95% interval, ``a_only`` / ``b_only`` the
    discordant pairs, ``p_value`` McNemar's exact test.
    """
    frame = _trials(df)
    rows = []
    cells_of = dict(iter(document_position_table(df).groupby(SERIES, sort=True)))
    for key, sub in frame.groupby(SERIES, sort=True):
        cells = cells_of[key]
        total = int(cells["documents_total"].max())
        wide = sub.pivot_table(index="sample", columns="gold_document_index", values="_correct", aggfunc="first")
        tested = sorted(int(p) for p in cells["gold_document_index"])
        middle = middle_position(tested, total)
        ranked = cells.sort_values(["accuracy", "gold_document_index"], ascending=[False, True])
        best, worst = int(ranked.iloc[0]["gold_document_index"]), int(ranked.iloc[-1]["gold_document_index"])
        compared = [("best_vs_worst", best, worst)] if best != worst else []
        if middle is not None:
            compared = [("first_vs_middle", tested[0], middle), ("last_vs_middle", tested[-1], middle), *compared]
        for name, a, b in compared:
            rows.append(dict(zip(SERIES, key), documents_total=total, comparison=name, position_a=a, position_b=b,
                             **_pair(wide, a, b)))
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def curve_shape(pairs: pd.DataFrame, alpha: float = ALPHA) -> str:
    """The shape of one series from its rows of ``position_pairs`` (see the module docstring)."""
    by = pairs.set_index("comparison")
    if "first_vs_middle" not in by.index or "last_vs_middle" not in by.index:
        return UNDECIDED

    def beats(name: str, sign: int) -> bool:
        row = by.loc[name]
        return bool(row["p_value"] < alpha and sign * row["difference"] > 0)

    first, last = beats("first_vs_middle", 1), beats("last_vs_middle", 1)
    if first and last:
        return U_CURVE
    if first or last:
        return PRIMACY if first else RECENCY
    if beats("first_vs_middle", -1) or beats("last_vs_middle", -1):
        return MIDDLE_BEST
    return FLAT

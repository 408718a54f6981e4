"""Plain-language sentences from the report's tables: what a reader should take away.

Every number in a sentence comes with its 95% interval or its trial count, so a reader can tell a
real effect from sampling noise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from evalkit.report.analysis.document_positions import FLAT, MIDDLE_BEST, PRIMACY, RECENCY, U_CURVE, UNDECIDED
from evalkit.report.analysis.shape import FLAT_LIMIT, DepthShape
from evalkit.report.analysis.stats import wilson_interval
from evalkit.report.document.blocks import Strong


def count(n: int, one: str, many: str) -> str:
    """``count(1, "trial", "trials") == "1 trial"``."""
    return f"{n:,} {one if n == 1 else many}"


def pct(value: float, decimals: int = 0) -> str:
    """``0.412 -> "41%"``, with ``decimals=1`` ``"41.2%"``; NaN -> "–"."""
    return "–" if value is None or pd.isna(value) else f"{value * 100:.{decimals}f}%"


def pct_below(value: float, threshold: float) -> str:
    """``value`` in percent with just enough decimals to read below ``threshold``: 0.8556 vs 0.856 -> "85.56%"."""
    for decimals in (1, 2, 3):
        text = f"{value * 100:.{decimals}f}"
        if float(text) < threshold * 100:
            break
    return text + "%"


def ci(low: float, high: float) -> str:
    """``"95% CI 30–53%"``."""
    return f"95% CI {low * 100:.0f}–{high * 100:.0f}%"


def points(value: float) -> str:
    """A difference of fractions in percentage points: ``0.2 -> "+20 pts"``, ``-0.05 -> "−5 pts"``."""
    if value is None or pd.isna(value):
        return "–"
    rounded = round(value * 100)
    return "0 pts" if rounded == 0 else f"{rounded:+d} pts".replace("-", "−")


def points_ci(value: float, low: float, high: float, unit: bool = True) -> str:
    """``"+60 pts [+20, +83]"`` (Newcombe 95% interval in brackets); ``unit=False``: ``"+60 [+20, +83]"``."""
    if pd.isna(value):
        return "–"
    text = f"{points(value)[:-4]} [{points(low)[:-4]}, {points(high)[:-4]}]"
    return text.replace(" [", " pts [", 1) if unit else text


def tokens(length: int) -> str:
    """``2048 -> "2,048 tokens"``."""
    return f"{int(length):,} tokens"


def depth_phrase(low: float, high: float) -> str:
    """``(0.3, 0.6) -> "between 30% and 60% depth"``; ``(0.5, 0.5) -> "at 50% depth"``."""
    if math.isclose(low, high):
        return f"at {low * 100:.4g}% depth"
    return f"between {low * 100:.4g}% and {high * 100:.4g}% depth"


def band_phrase(band: pd.Series) -> tuple[str, str]:
    """Where a band row of ``band_table`` sits, and its depths for a parenthesis.

    ``("at the start", "0–10% depth")`` for the start and end bands; ``("between 30% and 60% depth", "")``
    for the others (their depths are already in the phrase).
    """
    name, low, high = str(band["band"]), band["depth_min"], band["depth_max"]
    if name in ("start", "end"):
        span = f"{low * 100:.4g}%" if math.isclose(low, high) else f"{low * 100:.4g}–{high * 100:.4g}%"
        return f"at the {name}", f"{span} depth"
    return depth_phrase(low, high), ""


def _band_result(band: pd.Series) -> str:
    """``"at the start (0–10% depth, 95% CI 89–99%)"``: where a band is, its depths and its interval."""
    phrase, detail = band_phrase(band)
    return f"{phrase} ({detail + ', ' if detail else ''}{ci(band['ci_low'], band['ci_high'])})"


# ---------------------------------------------------------------------------- headline


def depth_headline(bands: pd.DataFrame) -> str:
    """One variant x task's rows of ``band_table``: the worst band vs the best at the length where it matters most.

    "Facts placed between 30% and 60% depth at 2,048 tokens are found 41% of the time (95% CI
    30–53%) vs 97% at the start (0–10% depth, 95% CI 89–99%)." Ties: the longest length, the shallower band.
    """
    if bands.empty:
        return "No completed trials."
    spreads = bands.groupby("context_length")["accuracy"].agg(lambda a: a.max() - a.min() if len(a) > 1 else -1.0)
    if spreads.max() < 0:
        return "Only one depth band was tested, so this grid cannot show where in the prompt facts get lost."
    if spreads.max() == 0:
        return "Needle depth made no difference: at every tested length all depth bands scored the same."
    length = max(spreads[spreads == spreads.max()].index)
    rows = bands[bands["context_length"] == length].reset_index(drop=True)
    worst, best = rows.loc[rows["accuracy"].idxmin()], rows.loc[rows["accuracy"].idxmax()]
    phrase, detail = band_phrase(worst)
    sentence = (f"Facts placed {phrase} at {tokens(length)}{' (' + detail + ')' if detail else ''} are found "
                f"{pct(worst['accuracy'])} of the time ({ci(worst['ci_low'], worst['ci_high'])}) vs "
                f"{pct(best['accuracy'])} {_band_result(best)}")
    if worst["ci_high"] < best["ci_low"]:
        return sentence + "."
    return sentence + "; the intervals overlap, so the gap may be sampling noise."


def effective_length_sentence(row: pd.Series) -> str:
    """One row of ``effective_context_length`` in words."""
    threshold = f"{row['threshold'] * 100:.4g}%"
    if pd.isna(row["effective_length"]):
        return (f"Accuracy over all depths is below {threshold} already at the shortest tested length "
                f"({tokens(row['shortest_tested'])}: {pct_below(row['first_failing_accuracy'], row['threshold'])}), "
                "so no effective "
                "context length was reached.")
    if row["beyond_tested"]:
        return (f"Accuracy over all depths stays at or above {threshold} at every tested length, up to "
                f"{tokens(row['longest_tested'])}; the effective context length is at least that "
                "(longer contexts were not tested).")
    return (f"Effective context length: {tokens(row['effective_length'])} (accuracy over all depths stays at or "
            f"above {threshold} up to there; {pct_below(row['first_failing_accuracy'], row['threshold'])} at "
            f"{tokens(row['first_failing_length'])}).")


def comparison_sentence(rows: pd.DataFrame) -> str:
    """One variant x task's rows of ``length_comparison``: the length with the largest gap to the baseline."""
    rows = rows.reset_index(drop=True)
    top = rows.loc[rows["difference"].abs().idxmax()]
    fraction = top.get("context_fraction")  # lengths as fractions of each model's window: the shared one
    at = tokens(top["context_length"]) if fraction is None else f"{fraction * 100:.4g}% of each model's window"
    where = f"Over all depths at {at}"
    if top["difference"] == 0:
        return f"{top['variant']} and {top['baseline']} scored the same at every shared length."
    sure = top["diff_low"] > 0 or top["diff_high"] < 0
    return (f"{where}, {top['variant']} finds {pct(top['accuracy'])} vs {pct(top['baseline_accuracy'])} for "
            f"{top['baseline']}: {points(top['difference'])}, 95% CI {points(top['diff_low'])[:-4]} to "
            f"{points(top['diff_high'])[:-4]}" + ("." if sure else "; the interval includes 0, so this may be noise."))


# ---------------------------------------------------------------------------- per-model paragraph


def finding_text(summary: pd.DataFrame, pooled: tuple[float, float] | None = None) -> str:
    """A plain-language paragraph on one model x task from its rows of ``summary_table``.

    ``pooled`` is the interval of the overall rate counting samples (``clusters.cluster_wilson_interval`` of the
    trials); without it the overall rate gets the plain Wilson interval of the summed counts.

    Reports overall accuracy, the context length where depth matters most (worst vs best depth,
    ties going to the shallower depth), whether the two intervals overlap, and the length trend.
    """
    done = summary[summary["n"] > 0]
    skipped = int(summary["skipped"].sum())
    if done.empty:
        return f"No completed trials: {count(skipped, 'trial was', 'trials were')} skipped."
    n, correct = int(done["n"].sum()), int(done["correct"].sum())
    sentences = [f"Over {n} trials the fact was found {pct(correct / n)} of the time "
                 f"({ci(*(pooled if pooled is not None else wilson_interval(correct, n)))})."]
    sentences += _depth_sentences(done)
    by_length = done.groupby("context_length")[["correct", "n"]].sum().sort_index()
    if len(by_length) > 1:
        first, last = by_length.iloc[0], by_length.iloc[-1]
        sentences.append(
            f"Pooled over depths, accuracy was {pct(first['correct'] / first['n'])} at "
            f"{tokens(by_length.index[0])} and {pct(last['correct'] / last['n'])} at {tokens(by_length.index[-1])}."
        )
    if skipped:
        sentences.append(f"{count(skipped, 'trial was', 'trials were')} skipped and not counted.")
    return " ".join(sentences)


def _depth(value: float) -> str:
    return f"{value * 100:.4g}%"


def _depth_sentences(done: pd.DataFrame) -> list[str]:
    """Worst vs best depth at the length where depth changes accuracy most."""
    spreads = done.groupby("context_length")["accuracy"].agg(lambda a: a.max() - a.min() if len(a) > 1 else -1.0)
    if spreads.empty or spreads.max() < 0:
        return []
    if spreads.max() == 0:
        return ["Needle depth made no difference: at each context length, accuracy was the same at every depth."]
    length = max(spreads[spreads == spreads.max()].index)  # ties: the longest context
    cells = done[done["context_length"] == length].sort_values("depth")
    worst = cells.loc[cells["accuracy"].idxmin()]  # idxmin/idxmax take the first: the shallower depth
    best = cells.loc[cells["accuracy"].idxmax()]
    out = [
        f"At {tokens(length)}, facts at {_depth(worst['depth'])} depth were found {pct(worst['accuracy'])} "
        f"of the time ({ci(worst['ci_low'], worst['ci_high'])}) vs {pct(best['accuracy'])} at "
        f"{_depth(best['depth'])} depth ({ci(best['ci_low'], best['ci_high'])})."
    ]
    if worst["ci_high"] < best["ci_low"]:
        out.append("The two 95% intervals do not overlap, so the gap is unlikely to be sampling noise.")
    else:
        out.append("The two 95% intervals overlap, so the gap may be sampling noise; more samples per cell would tell.")
    edges = cells.iloc[[0, -1]]
    if worst["depth"] not in edges["depth"].tolist() and (edges["accuracy"] > worst["accuracy"]).all():
        out.append("Both ends of the context did better than the middle: the \"lost in the middle\" pattern.")
    return out


def within_points(bound: float) -> str:
    """A flat bound in whole points: ``0.07 -> "±7 points"``, ``0.01 -> "±1 point"``."""
    return "±" + count(round(bound * 100), "point", "points")


def shape_line(shape: DepthShape, name_task: bool = False) -> tuple:
    """The decision block's shape bullet: ``"Shape at 4,096 tokens: recency at 95%: the end beats the middle
    (end − middle +40 pts [+25, +53]); the start does not (start − middle −3 pts [−18, +12])."``"""
    where = tokens(shape.context_length) + (f", {shape.task}" if name_task else "")
    start = f"start − middle {points_ci(*shape.primacy)}"
    end = f"end − middle {points_ci(*shape.recency)}"
    limit = within_points(FLAT_LIMIT)
    text = {
        U_CURVE: f"U-shaped at 95%: both ends beat the middle ({start}; {end}).",
        PRIMACY: f"primacy at 95%: the start beats the middle ({start}); the end does not ({end}).",
        RECENCY: f"recency at 95%: the end beats the middle ({end}); the start does not ({start}).",
        MIDDLE_BEST: f"the middle is best at 95%: an end falls below it ({start}; {end}).",
        FLAT: f"flat within {within_points(shape.flat_within or 0)} at 95% ({start}; {end}).",
        UNDECIDED: f"not decided: neither end differs from the middle at 95%, and the intervals reach past {limit} "
                   f"({start}; {end}); more samples would tell.",
    }[shape.shape]
    return (Strong(f"Shape at {where}: "), text)


def shape_lines(shapes: Sequence[DepthShape]) -> list[tuple]:
    """The decision block's shape bullets: one per task x length, or one for all when none is decided (a grid of
    few samples per cell would otherwise fill the block with the same "not decided")."""
    several_tasks = len({s.task for s in shapes}) > 1
    if len(shapes) < 2 or any(s.shape != UNDECIDED for s in shapes):
        return [shape_line(s, several_tasks) for s in shapes]
    lengths = sorted({s.context_length for s in shapes})
    where = tokens(lengths[0]) if len(lengths) == 1 else f"{lengths[0]:,}–{tokens(lengths[-1])}"
    return [(Strong("Shape: "), f"not decided at {where}: neither end differs from the middle at 95% at any "
             f"tested length, and the intervals are too wide (past {within_points(FLAT_LIMIT)}) to call it "
             "flat; more samples would tell (the indices are under \"Where in the prompt\").")]

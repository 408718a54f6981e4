"""The report's "Does a fix help?" section: per model and task, each mitigation arm against ``none``.

Numbers come from ``analysis/mitigations.py`` (paired on the same trials); the chart from
``charts/mitigations.py``. ``mask_heads`` arms read as "top-k vs random-k": masking the retrieval heads should
hurt far more than masking as many random heads if those heads do the retrieving (Wu et al. 2024).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.report.analysis.mitigations import (
    arm_comparisons, arm_curves, arm_trials, effect_detected, has_arms, interval_excludes_zero,
)
from evalkit.report.charts.accuracy import new_figure, save_figure
from evalkit.report.charts.mitigations import plot_arm_curves
from evalkit.report.document.blocks import Block, Heading, Image, Para, Table
from evalkit.report.document.findings import pct, points

_INTRO = ("Each arm ran on exactly the baseline's trials (same questions, documents, lengths and requested "
          "positions), so every comparison is paired: gains are the arm's accuracy minus the baseline's with a "
          "paired bootstrap 95% interval that resamples samples (a sample keeps its needle at every depth), p is "
          "McNemar's exact test on the trials only one of the two got right; an arm's effect is stated only when "
          "its interval excludes 0 and p < 0.05. "
          "The middle band is depths 30-70%, the ends are 0-10% and 90-100%.")


@dataclass(frozen=True)
class MitigationReport:
    """What the section adds to the report: its blocks, chart files and table files."""

    blocks: list[Block] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def _interval(diff: float, low: float, high: float) -> str:
    if pd.isna(diff):
        return "–"
    return f"{points(diff)} (95% CI {points(low)[:-4]} to {points(high)[:-4]})"


def verdict(row) -> str:
    """One sentence on an arm vs the baseline: the middle-band change if decided, else the overall change if
    decided, else what is not decided (a bootstrap interval off zero that McNemar does not confirm is named)."""
    if effect_detected(row.middle_low, row.middle_high, row.middle_p_value):
        word = "recovers" if row.middle_difference > 0 else "loses"
        ends = ("costs nothing detectable at the ends"
                if not effect_detected(row.ends_low, row.ends_high, row.ends_p_value)
                else f"changes the ends by {_interval(row.ends_difference, row.ends_low, row.ends_high)}")
        return (f"{row.arm} {word} {points(abs(row.middle_difference)).lstrip('+')} in the middle band "
                f"(95% CI {points(row.middle_low)[:-4]} to {points(row.middle_high)[:-4]}, McNemar p = "
                f"{row.middle_p_value:.2g}) and {ends}.")
    if effect_detected(row.diff_low, row.diff_high, row.p_value):
        return (f"{row.arm} changes accuracy overall by {_interval(row.difference, row.diff_low, row.diff_high)}, "
                f"McNemar p = {row.p_value:.2g}, with no decided change in the middle band "
                f"({row.middle_pairs} pairs).")
    return f"{row.arm}: no decided effect with {row.pairs} paired trials{_undecided(row)}."


def _undecided(row) -> str:
    """Why an interval off zero is still not an effect: McNemar's p on too few discordant pairs."""
    for where, low, high, p in (("in the middle band", row.middle_low, row.middle_high, row.middle_p_value),
                                ("overall", row.diff_low, row.diff_high, row.p_value)):
        if interval_excludes_zero(low, high):
            return (f" (the bootstrap interval {where} excludes 0 but McNemar p = {p:.2g} on the pairs only one "
                    "side got right: too few to decide)")
    return ""


def _cost(row) -> str:
    if not row.extra_forwards and not row.extra_prompt_tokens:
        return "none"
    return f"+{row.extra_forwards:.3g} forwards, +{row.extra_prompt_tokens:.0f} prompt tokens per trial"


def _table(rows: pd.DataFrame) -> Table:
    body = tuple((r.arm, str(r.pairs), f"{pct(r.baseline_accuracy)} → {pct(r.arm_accuracy)}",
                  _interval(r.difference, r.diff_low, r.diff_high), f"{r.p_value:.2g}",
                  _interval(r.middle_difference, r.middle_low, r.middle_high),
                  "–" if pd.isna(r.middle_p_value) else f"{r.middle_p_value:.2g}", _cost(r))
                 for r in rows.itertuples(index=False))
    return Table(("arm", "pairs", "accuracy (none → arm)", "gain overall", "p", "gain in the middle", "p (middle)",
                  "extra cost"), body, (False, True, False, False, True, False, True, False),
                 caption="Each arm vs none on the same trials")


def _heads_sentence(rows: pd.DataFrame) -> str:
    """mask_heads arms side by side (top-k vs random-k), naming the heads each masked."""
    masked = rows[rows["masked_heads"] != ""]
    if masked.empty:
        return ""
    parts = [f"{r.arm} (heads {r.masked_heads}): {pct(r.arm_accuracy)} vs {pct(r.baseline_accuracy)} unmasked, "
             f"{_interval(r.difference, r.diff_low, r.diff_high)}" for r in masked.itertuples(index=False)]
    return "Masked heads (layer.head), top-k vs random-k: " + "; ".join(parts) + "."


def mitigation_report(records: pd.DataFrame, out: Path, inside: Callable[[Path, str], Path],
                      stems: Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]]) -> MitigationReport:
    """The section for ``records`` (every arm's records), its chart per model x task and ``mitigations.csv``;
    empty when the runs have no arm besides ``none``."""
    trials = arm_trials(records)
    if not has_arms(trials):
        return MitigationReport()
    comparisons, curves = arm_comparisons(trials), arm_curves(trials)
    table_path = inside(out, "mitigations.csv")
    comparisons.to_csv(table_path, index=False)
    blocks: list[Block] = [Heading(2, "Does a fix help?", "mitigations"), Para(_INTRO)]
    charts: list[Path] = []
    series = sorted({(str(m), str(t)) for m, t in zip(comparisons["model"], comparisons["task"])})
    stem_of = stems(series)
    for model, task in series:
        rows = comparisons[(comparisons["model"] == model) & (comparisons["task"] == task)]
        blocks.append(Heading(3, f"{model} · {task}"))
        fig = new_figure(7.0, 4.0)
        plot_arm_curves(curves, fig.add_subplot(), model, task)
        written = save_figure(fig, inside(out, f"mitigations_{stem_of[(model, task)]}"))
        charts += written
        blocks.append(Image(next(p for p in written if p.suffix == ".png"),
                            f"Accuracy by position, each arm overlaid on none · {model} · {task}"))
        blocks.append(Para(" ".join(verdict(r) for r in rows.itertuples(index=False))))
        heads = _heads_sentence(rows)
        if heads:
            blocks.append(Para(heads))
        blocks.append(_table(rows))
    return MitigationReport(blocks, charts, [table_path])

"""The report's "Does the content change it?" section: paired comparisons per content axis (distractors,
haystack order, needle variant) and accuracy against the needle's measured similarity to the question
(``analysis/content_axes.py``).

``content_report(records, out)`` adds nothing when the runs varied no content axis and measured no similarity,
so earlier reports are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.report.analysis.decision import ALPHA
from evalkit.report.analysis.content_axes import AXIS_TITLES, SIMILARITY_BINS, axis_pairs, similarity_table
from evalkit.report.analysis.failure_mix import band_label
from evalkit.report.charts.accuracy import new_figure, save_figure
from evalkit.report.charts.failures import plot_accuracy_vs_similarity
from evalkit.report.document.blocks import Block, Heading, Image, Para, Strong, Table
from evalkit.report.document.findings import pct, points_ci
from evalkit.report.document.sections import ci_cell


@dataclass(frozen=True)
class ContentReport:
    """What the content section adds: blocks, chart files, table files."""

    blocks: list[Block] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    lines: dict[str, list[tuple]] = field(default_factory=dict)  # per model: the decision block's content line


def content_line(pairs: pd.DataFrame) -> tuple:
    """One model's comparisons in one bullet: ``"Content (paired): 4 distractors vs 0 distractors −30 pts [−40,
    −20], p = 0.001; shuffled haystack vs coherent haystack 0 pts [−5, +5], p = 1 (not decided)"``."""
    parts = [f"{r.value} vs {r.baseline} {points_ci(r.difference, r.diff_low, r.diff_high)}, McNemar p = "
             f"{r.p_value:.2g}" + ("" if verdict(r).startswith("decided") else " (not decided)")
             for r in pairs.itertuples(index=False)]
    return (Strong("Content (paired trials): "), "; ".join(parts) + ".")


def verdict(row) -> str:
    """``"decided: fewer found"`` when the interval excludes 0 and McNemar's p is below 0.05, else not decided."""
    if row.diff_low <= 0 <= row.diff_high:
        return "not decided (the interval includes 0)"
    if row.p_value >= ALPHA:
        return f"not decided (McNemar p ≥ {ALPHA:g})"
    return "decided: more found" if row.difference > 0 else "decided: fewer found"


def pairs_table(pairs: pd.DataFrame, axis: str) -> Table:
    """One axis's comparisons: per model and value, the paired difference to the baseline, McNemar's p."""
    rows = pairs[pairs["axis"] == axis]
    return Table(("model", "comparison", "pairs", "accuracy", "baseline accuracy", "difference [95% CI]",
                  "right only with it / only with baseline", "McNemar p", "verdict"),
                 tuple((r.model, f"{r.value} vs {r.baseline}", str(r.pairs), pct(r.accuracy), pct(r.baseline_accuracy),
                        points_ci(r.difference, r.diff_low, r.diff_high), f"{r.value_only} / {r.baseline_only}",
                        f"{r.p_value:.2g}", verdict(r)) for r in rows.itertuples(index=False)),
                 (False, False, True, True, True, True, True, True, False), caption=AXIS_TITLES[axis])


def _similarity_blocks(table: pd.DataFrame, out: Path, inside, stems) -> tuple[list[Block], list[Path]]:
    """Per model: accuracy by similarity bin and position band (chart and table)."""
    bins = ", ".join(f"{name} [{low * 100:.0f}–{high * 100:.0f}%{']' if high == 1.0 else ')'}"
                     for name, low, high in SIMILARITY_BINS)
    blocks: list[Block] = [Heading(3, "Accuracy against measured similarity"), Para(
        "Each trial's needle is measured against its question: the share of the question's content words found in "
        f"the needle (overlap) and the needle's BM25 score. Bins of overlap: {bins}. Accuracy pools each bin's "
        "trials; its 95% interval counts samples (Wilson on the design-effect count).")]
    charts: list[Path] = []
    models = list(dict.fromkeys(table["model"]))
    stem_of = stems([(m,) for m in models])
    for model in models:
        fig = new_figure(7.5, 4.4)
        plot_accuracy_vs_similarity(table, fig.add_subplot(), model)
        written = save_figure(fig, inside(out, f"similarity_{stem_of[(model,)]}"))
        charts += written
        rows = table[table["model"] == model]
        blocks += [*(Image(p, f"Accuracy against similarity: {model}") for p in written if p.suffix == ".png"),
                   Table(("band", "similarity", "mean overlap", "mean BM25", "accuracy [95% CI] (n)"),
                         tuple((band_label(r.band), r.similarity, pct(r.overlap), f"{r.bm25:.2f}",
                                ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n)) for r in rows.itertuples(index=False)),
                         (False, False, True, True, True), caption=model)]
    return blocks, charts


def graded_similarity(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the models whose trials span at least two similarity bins (one bin compares nothing)."""
    if table.empty:
        return table
    graded = table.groupby("model")["similarity"].transform("nunique") > 1
    return table[graded.to_numpy()].reset_index(drop=True)


def content_report(records: pd.DataFrame, out: Path, inside: Callable[[Path, str], Path],
                   stems: Callable[[list[tuple[str, ...]]], dict[tuple[str, ...], str]]) -> ContentReport:
    """The content section of ``records``: ``content_pairs.csv`` and ``similarity.csv`` when there is something
    to show, charts written into ``out``."""
    pairs, similarity = axis_pairs(records), graded_similarity(similarity_table(records))
    if pairs.empty and similarity.empty:
        return ContentReport()
    lines = {str(model): [content_line(rows)] for model, rows in pairs.groupby("model", sort=False)}
    blocks: list[Block] = [Heading(2, "Does the content change it? Paired comparisons", "content-axes"), Para(
        "Trials that differ only in one content axis hold the same fact in the same text at the same depth (same "
        "task, length, sample and every other layout axis), so each comparison is paired: the difference is "
        "accuracy with the value minus accuracy with the baseline, its 95% interval a paired bootstrap over "
        "samples, p McNemar's exact test on the pairs only one side got right. A comparison is decided when the "
        f"interval excludes 0 and p < {ALPHA:g}.")]
    tables: list[Path] = []
    if not pairs.empty:
        tables.append(inside(out, "content_pairs.csv"))
        pairs.to_csv(tables[-1], index=False)
        blocks += [pairs_table(pairs, axis) for axis in dict.fromkeys(pairs["axis"])]
    charts: list[Path] = []
    if not similarity.empty:
        tables.append(inside(out, "similarity.csv"))
        similarity.to_csv(tables[-1], index=False)
        more, charts = _similarity_blocks(similarity, out, inside, stems)
        blocks += more
    return ContentReport(blocks, charts, tables, lines)

"""The attention-per-document part of the attention section (documents tasks with capture on): its tables, its
chart per model x task, and its blocks (``analysis/document_attention.py`` computes the numbers)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from evalkit.report.analysis.attention import AttentionData
from evalkit.report.analysis.document_attention import (
    attention_by_position,
    document_mass_table,
    gold_minus_distractor,
    gold_rank_table,
)
from evalkit.report.charts.accuracy import new_figure, save_figure
from evalkit.report.charts.documents import (
    plot_document_attention,
    plot_gold_minus_distractor,
)
from evalkit.report.data.documents import position_text
from evalkit.report.document.blocks import Block, Heading, Image, Para, Table
from evalkit.report.document.findings import points_ci

TABLE_NAMES = ("attention_documents", "attention_gold_vs_distractor", "attention_gold_rank")
_INTRO = ("Attention per document: the answer step's mass (last prompt token, mean of layers and heads) on each "
          "document's tokens. Gold − distractor: at each gold position, the gold document's mass minus the mass a "
          "distractor gets at that same position in the trials of the same question with the gold elsewhere (Found "
          "in the Middle's calibration in spirit: what the gold gets for its content, not its place). Intervals are "
          "95% t intervals over trials (pairs).")


def document_attention_tables(data: AttentionData) -> dict[str, pd.DataFrame]:
    """The three tables (``TABLE_NAMES``), or {} when no trial with arrays has documents."""
    table = document_mass_table(data)
    if table.empty:
        return {}
    return dict(zip(TABLE_NAMES, (attention_by_position(table), gold_minus_distractor(table),
                                  gold_rank_table(table))))


def _pick(table: pd.DataFrame, model: str, task: str) -> pd.DataFrame:
    return table[(table["model"] == model) & (table["task"] == task)]


def document_attention_chart(tables: dict[str, pd.DataFrame], out: Path, inside: Callable[[Path, str], Path],
                             model: str, task: str, stem: str) -> list[Path]:
    """``attention_documents_<stem>`` (PNG, SVG): the attention U-curve over documents, and gold − distractor."""
    fig = new_figure(13.0, 4.6)
    left, right = fig.subplots(1, 2)
    plot_document_attention(tables["attention_documents"], left, model, task)
    plot_gold_minus_distractor(tables["attention_gold_vs_distractor"], right, model, task)
    return save_figure(fig, inside(out, f"attention_documents_{stem}"))


def _mass(value: float) -> str:
    return "–" if pd.isna(value) else f"{value * 100:.2f}%"


def _interval(value: float, low: float, high: float) -> str:
    if pd.isna(low) or pd.isna(high):
        return f"{_mass(value)} (n too small)"
    return f"{_mass(value)} [{_mass(low)}, {_mass(high)}]"  # a comma: bounds may be negative


def _rate(k: int, n: int, low: float, high: float) -> str:
    return f"– (n={n})" if n == 0 else f"{k / n * 100:.0f}% [{low * 100:.0f}–{high * 100:.0f}] (n={n})"


def _rank_sentence(row) -> str:
    """Whether the gold document's attention rank predicts correctness, in words."""
    auroc = "n/a" if pd.isna(row.auroc_mass) else f"{row.auroc_mass:.2f}"
    if row.n_top == 0 or row.n_other == 0:
        split = ("the gold document was the top-attended one in every trial" if row.n_other == 0 else
                 "the gold document was never the top-attended one")
        return f"{split.capitalize()}, so rank cannot be compared; AUROC of gold mass for correctness: {auroc}."
    sure = row.diff_low > 0 or row.diff_high < 0
    top = _rate(row.correct_top, row.n_top, row.top_low, row.top_high)
    return (f"Accuracy with the gold document top-attended {top}"
            f" vs {_rate(row.correct_other, row.n_other, row.other_low, row.other_high)} otherwise: "
            f"{points_ci(row.difference, row.diff_low, row.diff_high)} (Newcombe)"
            + ("" if sure else ", the interval includes 0, so this may be noise")
            + f". AUROC of gold mass for correctness {auroc}, of gold rank "
            + ("n/a" if pd.isna(row.auroc_rank) else f"{row.auroc_rank:.2f}") + " (0.5 = no signal).")


def document_attention_blocks(tables: dict[str, pd.DataFrame], pngs: list[Path], model: str,
                              task: str) -> list[Block]:
    """The blocks of one model x task (nothing when it has no documents)."""
    by_position = _pick(tables.get("attention_documents", pd.DataFrame(columns=["model", "task"])), model, task)
    if by_position.empty:
        return []
    calibrated = _pick(tables["attention_gold_vs_distractor"], model, task)
    ranks = _pick(tables["attention_gold_rank"], model, task)
    total = int(by_position["documents_total"].max())
    blocks: list[Block] = [Heading(4, "Attention per document"), Para(_INTRO)]
    blocks += [Image(p, f"Attention by document position and gold minus distractor mass · {model} · {task}",
                     wide=True) for p in pngs]
    blocks.append(Table(
        ("document position", "trials", "mass [95% CI]", "gold there: mass (n)", "distractor there: mass"),
        tuple((position_text(r.position, r.documents_total), str(r.n), _interval(r.mass, r.mass_low, r.mass_high),
               f"{_mass(r.gold_mass)} (n={r.n_gold})", _mass(r.distractor_mass))
              for r in by_position.itertuples(index=False)), (True,) * 5,
        caption=f"Answer-step attention on the document at each position (1 = first of {total})"))
    blocks.append(Table(
        ("gold position", "pairs", "gold mass", "distractor mass", "gold − distractor [95% CI]"),
        tuple((position_text(r.gold_document_index, r.documents_total), str(r.n), _mass(r.gold_mass),
               _mass(r.distractor_mass), _interval(r.difference, r.diff_low, r.diff_high))
              for r in calibrated.itertuples(index=False)), (True,) * 5,
        caption="Gold document minus a distractor at the same position, same question"))
    blocks += [Heading(4, "Does the gold document's attention rank predict correctness?")]
    blocks += [Para(_rank_sentence(r)) for r in ranks.itertuples(index=False)]
    return blocks

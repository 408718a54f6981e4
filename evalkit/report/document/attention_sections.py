"""The report's attention section: charts, tables and their files, when the runs captured attention.

``attention_report(records, out)`` returns nothing to add when no trial has attention arrays, so reports of
runs without capture are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from evalkit.report.analysis.attention_calibration import dummy_calibration_table
from evalkit.report.analysis.attention import (
    attention_data,
    bin_table,
    head_table,
    layer_depth_table,
    needle_mass_table,
    prediction_table,
    chance_auroc,
    top_heads,
)
from evalkit.report.charts.attention import (
    plot_attention_bins,
    plot_head_scores,
    plot_layer_depth,
    plot_needle_mass_vs_depth,
)
from evalkit.report.charts.accuracy import new_figure, save_figure
from evalkit.report.data.untrained import UNTRAINED_NOTE
from evalkit.report.document.blocks import Block, Details, Heading, Image, Para, Table
from evalkit.report.document.document_attention_section import (
    document_attention_blocks,
    document_attention_chart,
    document_attention_tables,
)

_FACETS_PER_ROW = 4


@dataclass(frozen=True)
class AttentionReport:
    """What the attention section adds to a report: document blocks, chart files, table files."""

    blocks: list[Block] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)


def auroc_cell(value: float) -> str:
    """``"0.73"``, or ``"n/a"`` when one class is empty."""
    return "n/a" if pd.isna(value) else f"{value:.2f}"


def _mass(value: float) -> str:
    return "–" if pd.isna(value) else f"{value * 100:.2f}%"


def interval_cell(value: float, low: float, high: float, show: Callable[[float], str]) -> str:
    """``"value [low–high]"``, or ``"value (n too small)"`` when the interval is undefined (fewer than 2 trials)."""
    if pd.isna(low) or pd.isna(high):
        return f"{show(value)} (n too small)"
    return f"{show(value)} [{show(low)}–{show(high)}]"


def _ratio(value: float) -> str:
    return "–" if pd.isna(value) else f"{value:.2f}x"


def attention_report(records: pd.DataFrame, out: Path, inside: Callable[[Path, str], Path],
                     stems: Callable[[list[tuple[str, str]]], dict[tuple[str, str], str]],
                     untrained: frozenset[str] = frozenset()) -> AttentionReport:
    """Compute the attention tables of ``records``' runs, write charts and CSVs into ``out``, return blocks.

    ``inside(out, name)`` makes a safe path in ``out``; ``stems([(model, task), ...])`` unique file-name stems.
    ``untrained``: the models that ran with random weights; each of their series says so (sorted by label, a
    control follows its trained model: ``"m"`` < ``"m (random init, seed 0)"``).
    """
    data = attention_data(records)
    if data is None:
        return AttentionReport()
    tables = {"attention_needle_mass": needle_mass_table(data), "attention_layers": layer_depth_table(data),
              "attention_bins": bin_table(data), "attention_heads": head_table(data),
              "attention_prediction": prediction_table(data)}
    calibration = dummy_calibration_table(records)
    if not calibration.empty:
        tables["attention_dummy_calibration"] = calibration
    documents = document_attention_tables(data)  # documents tasks only: {} otherwise
    tables.update(documents)
    table_files = []
    for name, table in tables.items():
        path = inside(out, f"{name}.csv")
        table.to_csv(path, index=False)
        table_files.append(path)
    series = sorted({(str(m), str(t)) for m, t in zip(data.trials["model"], data.trials["task"])})
    blocks: list[Block] = [Heading(2, "Attention inside the model", "attention"), Para(_INTRO)]
    charts: list[Path] = []
    stem_of = stems(series)
    for model, task in series:
        if len(series) > 1:
            blocks.append(Heading(3, f"{model} · {task}"))
        if model in untrained:
            blocks.append(Para(f"Untrained control: {UNTRAINED_NOTE}. Its split into correct and wrong trials "
                               "(AUROC, retrieval heads) rests on chance answers; compare its attention by position "
                               "(needle mass by depth, the U-curve) with the trained model's.", kind="note"))
        stem = stem_of[(model, task)]
        written = _series_charts(tables, out, inside, model, task, stem)
        charts += written
        pngs = [p for p in written if p.suffix == ".png"]
        blocks += _series_blocks(tables, pngs, model, task)
        if not calibration.empty:
            blocks += _calibration_blocks(_pick(calibration, model, task))
        if documents and not _pick(documents["attention_documents"], model, task).empty:
            written = document_attention_chart(documents, out, inside, model, task, stem)
            charts += written
            blocks += document_attention_blocks(documents, [p for p in written if p.suffix == ".png"], model, task)
    return AttentionReport(blocks, charts, table_files)


_INTRO = ("Attention of the answer step: the last prompt token, whose output is the first answer token, per layer "
          "and head, captured with the fast kernel still computing the output. Needle mass = the share of that "
          "row's attention on the needle's tokens. The sink (first token) is counted on its own, carved out of the "
          "preamble; the haystack is also split into equal positional bins. Intervals are 95% t intervals over "
          "trials. AUROC = probability that a correct trial has more needle mass than a wrong one (0.5 = no "
          "signal; n/a when all trials are correct or all wrong).")


def _series_charts(tables: dict[str, pd.DataFrame], out: Path, inside, model: str, task: str,
                   stem: str) -> list[Path]:
    """The four chart files of one model x task (PNG and SVG each)."""
    mass, layers = tables["attention_needle_mass"], tables["attention_layers"]
    fig = new_figure(12.0, 4.6)
    left, right = fig.subplots(1, 2)
    plot_needle_mass_vs_depth(mass, left, model, task)
    plot_needle_mass_vs_depth(mass, right, model, task, relative=True)
    written = save_figure(fig, inside(out, f"attention_needle_mass_{stem}"))

    sub = layers[(layers["model"] == model) & (layers["task"] == task)]
    lengths = sorted(sub["context_length"].unique().tolist())
    cols = min(len(lengths), _FACETS_PER_ROW)
    rows = -(-len(lengths) // cols)
    n_layers = sub["layer"].nunique()
    fig = new_figure(max(6.0, 4.2 * cols), rows * max(3.6, 1.2 + 0.12 * n_layers) + 0.6)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    vmax = float(np.nanmax(sub["needle_mass"])) if not sub.empty else 1.0
    for ax, length in zip(axes, lengths):
        plot_layer_depth(layers, ax, model, task, int(length), vmax)
    for ax in axes[len(lengths):]:
        ax.set_visible(False)
    fig.suptitle(f"Needle attention mass by layer and needle depth (mean of heads) · {model} · {task}", fontsize=11)
    written += save_figure(fig, inside(out, f"attention_layers_{stem}"))

    fig = new_figure(13.0, 4.6)
    left, right = fig.subplots(1, 2)
    plot_attention_bins(tables["attention_bins"], left, model, task, with_sink=True)
    plot_attention_bins(tables["attention_bins"], right, model, task, with_sink=False)
    written += save_figure(fig, inside(out, f"attention_bins_{stem}"))

    heads = tables["attention_heads"]
    n_heads = heads["head"].nunique()
    fig = new_figure(max(9.0, 1.2 + 0.9 * n_heads), max(4.5, 1.4 + 0.16 * n_layers))
    left, right = fig.subplots(1, 2)
    plot_head_scores(heads, left, model, task, "auroc")
    plot_head_scores(heads, right, model, task, "retrieval_score")
    return written + save_figure(fig, inside(out, f"attention_heads_{stem}"))


def _series_blocks(tables: dict[str, pd.DataFrame], pngs: list[Path], model: str, task: str) -> list[Block]:
    mass_png, layers_png, bins_png, heads_png = pngs
    mass = _pick(tables["attention_needle_mass"], model, task)
    heads = _pick(tables["attention_heads"], model, task)
    prediction = _pick(tables["attention_prediction"], model, task)
    blocks: list[Block] = [
        Heading(4, "Needle attention by depth"),
        Image(mass_png, f"Needle attention mass vs needle depth, per context length · {model} · {task}", wide=True),
        Details("Needle attention mass per cell", (Table(
            ("context length", "depth", "n", "needle mass [95% CI]", "vs uniform [95% CI]"),
            tuple((f"{r.context_length:,}", f"{r.depth * 100:.4g}%", str(r.n),
                   interval_cell(r.needle_mass, r.mass_low, r.mass_high, _mass),
                   interval_cell(r.vs_uniform, r.vs_uniform_low, r.vs_uniform_high, _ratio))
                  for r in mass.itertuples(index=False)), (True, True, True, True, True)),)),
        Heading(4, "By layer"),
        Image(layers_png, f"Needle attention mass by layer and depth · {model} · {task}", wide=True),
        Heading(4, "By position: the attention U-curve"),
        Image(bins_png, f"Attention by position in the prompt, with and without the sink · {model} · {task}",
              wide=True),
        Heading(4, "Does needle attention predict retrieval?"),
        Table(("context length", "n correct", "n wrong", "AUROC", "needle mass, correct", "needle mass, wrong"),
              tuple((r.context_length if r.context_length == "all" else f"{int(r.context_length):,}",
                     str(r.n_correct), str(r.n_wrong), auroc_cell(r.auroc), _mass(r.mass_correct),
                     _mass(r.mass_wrong)) for r in prediction.itertuples(index=False)),
              (True,) * 6, caption="AUROC of the answer step's needle mass (mean of layers and heads) for "
                                   "correct vs wrong trials"),
        Heading(4, "Retrieval heads"),
        Image(heads_png, f"Per-head AUROC and retrieval score · {model} · {task}", wide=True),
        Para(_chance_text(heads), kind="note"),
        _head_table(top_heads(heads, "auroc"), "Top 10 heads by AUROC (needle mass separating correct from "
                                               "wrong trials, all lengths and depths)"),
        _head_table(top_heads(heads, "retrieval_score"), "Top 10 heads by retrieval score (Wu et al. 2024: share "
                    "of captured answer steps generating a needle token whose strongest key is that token in the "
                    f"needle; {int(heads['eligible_rows'].iloc[0]) if not heads.empty else 0} eligible steps)"),
    ]
    return blocks


def _chance_text(heads: pd.DataFrame) -> str:
    """How high a top head's AUROC gets by chance alone (the heads are picked on the same trials)."""
    if heads.empty:
        return "No heads."
    n1, n0 = int(heads["n_correct"].iloc[0]), int(heads["n_wrong"].iloc[0])
    level = chance_auroc(n1, n0, len(heads))
    if pd.isna(level):
        return "AUROC needs both correct and wrong trials; this series has only one kind."
    if level >= 1.0:
        return (f"The top heads are picked from {len(heads)} on the same {n1 + n0} trials ({n1} correct, {n0} wrong): "
                "n too small, since without any real effect one of them reaches AUROC 1.00 with probability "
                "above 5% (exact Mann-Whitney distribution, Bonferroni); no head's AUROC here shows more than chance.")
    return (f"The top heads are picked from {len(heads)} on the same {n1 + n0} trials: without any real effect one "
            f"of them exceeds AUROC {level:.2f} with probability 5% (Bonferroni; exact Mann-Whitney distribution for "
            "small samples, normal approximation for large ones). Pooled over "
            "lengths and depths, a head's AUROC also reflects where the wrong trials sit (depth, length).")


def _pick(table: pd.DataFrame, model: str, task: str) -> pd.DataFrame:
    return table[(table["model"] == model) & (table["task"] == task)]


def _head_table(rows: pd.DataFrame, caption: str) -> Table:
    return Table(("layer", "head", "AUROC", "needle mass, correct", "needle mass, wrong", "retrieval score",
                  "copy events"),
                 tuple((str(r.layer), str(r.head), auroc_cell(r.auroc), _mass(r.mass_correct), _mass(r.mass_wrong),
                        "–" if pd.isna(r.retrieval_score) else f"{r.retrieval_score:.2f}", str(int(r.copy_events)))
                       for r in rows.itertuples(index=False)), (True,) * 7, caption=caption)


def _calibration_blocks(table: pd.DataFrame) -> list[Block]:
    """The dummy-needle calibration table of one model and task (nothing when it has no pairs)."""
    if table.empty:
        return []
    return [
        Heading(4, "Needle vs dummy needle: attention for content, not position"),
        Table(("context length", "depth", "pairs", "needle mass", "dummy mass", "needle − dummy [95% CI]"),
              tuple((f"{r.context_length:,}", f"{r.depth * 100:.4g}%", str(r.n), _mass(r.needle_mass),
                     _mass(r.dummy_mass), interval_cell(r.difference, r.diff_low, r.diff_high, _mass))
                    for r in table.itertuples(index=False)),
              (True,) * 6,
              caption="Answer-step attention on the needle minus that on a content-free sentence of the same length "
                      "at the same position (Found in the Middle's calibration); pairs share haystack and sample"),
    ]

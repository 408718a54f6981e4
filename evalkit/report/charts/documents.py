"""Charts of documents tasks on the gold document position axis: accuracy curves and heatmaps, attention per document.

Drawn from the tables of ``analysis/document_positions.py`` and ``analysis/document_attention.py``; positions are
shown 1-based (1 = the first document). Like the other chart modules, nothing here touches pyplot's global state.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, PercentFormatter

from evalkit.report.charts.accuracy import DEPTH_MARKERS, HEATMAP_CMAP, cell_counts, length_colors
from evalkit.report.data.documents import (
    accuracy_label,
    position_axis_label,
    sentence_case,
)

_MISSING_CELL = "#e6e6e6"


def _series(table: pd.DataFrame, column: str, name: str, task: str) -> pd.DataFrame:
    return table[(table[column].astype("str") == name) & (table["task"] == task)]


def _position_axis(ax: Axes, positions, total: int | None) -> None:
    """x axis of 1-based gold document positions (every tested one ticked)."""
    ticks = sorted({int(p) for p in positions})
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    if ticks:
        ax.set_xlim(0.5, max(ticks[-1], total or 0) + 0.5)
    ax.set_xlabel(position_axis_label(total))
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def plot_accuracy_vs_document_position(table: pd.DataFrame, ax: Axes, variant: str, task: str,
                                       metric: str = "contains", controls: pd.DataFrame | None = None) -> Axes:
    """Accuracy (%) vs gold document position, one line per context length, Wilson 95% bands.

    ``table`` is ``document_position_table``; ``controls`` (rows of ``control_rates`` for this variant and task)
    draws the closed-book and oracle rates as dashed horizontal lines.
    """
    sub = _series(table, "variant", variant, task)
    colors = length_colors(table["context_length"].unique())
    markers = itertools.cycle(DEPTH_MARKERS)
    for length, cells in sub.groupby("context_length", sort=True):
        cells = cells.sort_values("gold_document_index")
        x = cells["gold_document_index"].to_numpy() + 1
        color = colors[int(length)]
        ax.fill_between(x, cells["ci_low"] * 100.0, cells["ci_high"] * 100.0, color=color, alpha=0.15, linewidth=0)
        ax.plot(x, cells["accuracy"] * 100.0, color=color, marker=next(markers), markersize=6, linewidth=2,
                label=f"{int(length):,} tokens", clip_on=False, zorder=3)
    styles = {"closed_book": ("closed book", "#888888", ":"), "oracle": ("oracle", "#333333", "--")}
    for row in ([] if controls is None else controls.itertuples(index=False)):
        if row.control in styles and not pd.isna(row.accuracy):
            name, color, style = styles[row.control]
            ax.axhline(row.accuracy * 100.0, color=color, linestyle=style, linewidth=1.2,
                       label=f"{name} {row.accuracy * 100:.0f}% (n={row.n})")
    total = int(sub["documents_total"].max()) if not sub.empty else None
    _position_axis(ax, sub["gold_document_index"] + 1, total)
    ax.set_ylim(0.0, 100.0)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_ylabel(f"{accuracy_label(metric)} (%)")
    ax.set_title(f"{sentence_case(accuracy_label(metric))} by {position_axis_label(total).split(' (')[0]} "
                 f"(shaded: 95% CI)\n{variant} · {task} ({cell_counts(sub, 'position')})", fontsize=11)
    if not sub.empty:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    return ax


def plot_document_heatmap(table: pd.DataFrame, ax: Axes, variant: str, task: str, metric: str = "contains") -> Axes:
    """Heatmap: gold document position (rows, 1 at top) x context length (columns), accuracy in percent."""
    sub = _series(table, "variant", variant, task)
    matrix = sub.pivot_table(index="gold_document_index", columns="context_length", values="accuracy",
                             aggfunc="first").sort_index().sort_index(axis=1) * 100.0
    labels = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0f}%", otypes=[object])(matrix.to_numpy())
    ax.set_facecolor(_MISSING_CELL)
    sns.heatmap(matrix, ax=ax, vmin=0.0, vmax=100.0, cmap=HEATMAP_CMAP, annot=labels, fmt="",
                annot_kws={"fontsize": 9}, linewidths=0.8, linecolor="white",
                cbar_kws={"label": f"{accuracy_label(metric)} (%)", "format": PercentFormatter(100, decimals=0)},
                xticklabels=[f"{int(c):,}" for c in matrix.columns],
                yticklabels=[str(int(i) + 1) for i in matrix.index])
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0)
    total = int(sub["documents_total"].max()) if not sub.empty else None
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(position_axis_label(total))
    ax.set_title(f"{sentence_case(accuracy_label(metric))} by gold document position\n{variant} · {task} "
                 f"({cell_counts(sub, 'position')})", fontsize=11)
    return ax


def plot_document_attention(by_position: pd.DataFrame, ax: Axes, model: str, task: str) -> Axes:
    """Attention U-curve over documents: mean answer-step mass on the document at each position (95% t band),
    and the same split into trials where the gold document sits there and where a distractor does."""
    sub = _series(by_position, "model", model, task)
    total = int(sub["documents_total"].max()) if not sub.empty else None
    sub = sub[sub["documents_total"] == total]
    x = sub["position"].to_numpy() + 1
    ax.fill_between(x, sub["mass_low"] * 100.0, sub["mass_high"] * 100.0, color="#4c72b0", alpha=0.18, linewidth=0)
    ax.plot(x, sub["mass"] * 100.0, color="#4c72b0", marker="o", linewidth=2, label="all trials")
    ax.plot(x, sub["gold_mass"] * 100.0, color="#dd8452", marker="^", linewidth=1.4, linestyle="--",
            label="gold document there")
    ax.plot(x, sub["distractor_mass"] * 100.0, color="#55a868", marker="s", linewidth=1.4, linestyle=":",
            label="distractor there")
    _position_axis(ax, x, total)
    ax.set_xlabel(f"document position (1 = first of {total})" if total else "document position")
    ax.set_ylim(bottom=0.0)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=1))
    ax.set_ylabel("attention on the document (% of the answer step)")
    ax.set_title(f"Attention by document position (mean of layers x heads; shaded: 95% CI)\n{model} · {task}",
                 fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    return ax


def plot_gold_minus_distractor(calibrated: pd.DataFrame, ax: Axes, model: str, task: str) -> Axes:
    """Per gold document position: gold mass minus the same question's distractor mass there (95% t interval)."""
    sub = _series(calibrated, "model", model, task)
    total = int(sub["documents_total"].max()) if not sub.empty else None
    sub = sub[sub["documents_total"] == total]
    x = sub["gold_document_index"].to_numpy() + 1
    y = sub["difference"].to_numpy() * 100.0
    low = np.nan_to_num(y - sub["diff_low"].to_numpy() * 100.0)
    high = np.nan_to_num(sub["diff_high"].to_numpy() * 100.0 - y)
    ax.errorbar(x, y, yerr=[low, high], color="#c44e52", marker="o", linewidth=2, capsize=4)
    ax.axhline(0.0, color="#555555", linewidth=1, linestyle="--")
    _position_axis(ax, x, total)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=1))
    ax.set_ylabel("gold − distractor mass (points of the answer step)")
    ax.set_title("Gold document minus a distractor at the same position\n(same question; dashed: no difference)",
                 fontsize=10)
    return ax

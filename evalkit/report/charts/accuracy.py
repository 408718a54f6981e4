"""Charts of retrieval accuracy: one function ``plot_x(df, ax)`` per chart, one saver.

Nothing here touches pyplot's global state or the matplotlib backend: ``new_figure`` builds a
``Figure`` on an Agg canvas, and the plot functions draw on any ``Axes`` (a notebook's included).
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, PercentFormatter

from evalkit.report.analysis.tables import depth_length_matrix, summary_table
from evalkit.report.data.lengths import AXIS_LABELS, FRACTION, TOKENS, length_axis, length_cell, length_text

HEATMAP_CMAP = "viridis"  # perceptually uniform and readable with the common colour-vision deficiencies
LINE_PALETTE = "colorblind"  # seaborn's Okabe-Ito-like qualitative palette: one colour per model/variant
# ordered light (short) to dark (long) so lengths never look like models; markers differ too
LENGTH_PALETTE = "flare"
DEPTH_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
_MISSING_CELL = "#e6e6e6"


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A Figure on its own Agg canvas (no pyplot, no global backend change), constrained layout."""
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path_without_suffix: str | Path, dpi: int = 150) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (``dpi``) and ``<path>.svg``, close it, return both paths.

    The suffix is appended, not substituted, so names like ``SmolLM2-1.7B`` keep their dots.
    """
    base = Path(path_without_suffix)
    if fig.canvas.manager is None:
        FigureCanvasAgg(fig)  # render with Agg explicitly; pyplot-managed figures keep their canvas
    written = []
    try:
        for suffix, options in ((".png", {"dpi": dpi}), (".svg", {"metadata": {"Date": None}})):
            path = base.parent / (base.name + suffix)
            fig.savefig(path, format=suffix[1:], facecolor="white", **options)
            written.append(path)
    finally:
        _close(fig)
    return written


def _close(fig: Figure) -> None:
    if fig.canvas.manager is not None:  # created through pyplot: drop it from pyplot's registry
        import matplotlib.pyplot as plt

        plt.close(fig)
    else:
        fig.clear()


def select_one(df: pd.DataFrame, column: str, value: str | None) -> str:
    """``value`` if the records hold it; when None, the only value of ``column`` in ``df``."""
    known = sorted(map(str, df[column].unique().tolist()))
    if value is None:
        if len(known) != 1:
            raise ValueError(f"the records hold several {column}s ({', '.join(known)}); pass {column}=")
        return known[0]
    if value not in known:
        raise ValueError(f"unknown {column} {value!r}; the records hold: {', '.join(known)}")
    return value


def depth_label(depth: float) -> str:
    """``0.25 -> "25%"``, ``0.125 -> "12.5%"``."""
    return f"{depth * 100:.4g}%"


def length_colors(lengths) -> dict[float, tuple[float, float, float]]:
    """A fixed colour per context length (sorted, light to dark), so every chart of one report agrees.

    ``lengths`` are tokens or window fractions (``report/data/lengths.py``); a whole number is keyed as an int.
    """
    ordered = sorted({int(x) if float(x).is_integer() else float(x) for x in lengths})
    palette = sns.color_palette(LENGTH_PALETTE, max(len(ordered), 1))
    return {length: palette[i % len(palette)] for i, length in enumerate(ordered)}


def length_labels(summary: pd.DataFrame, axis: str, values) -> list[str]:
    """Tick or legend labels of ``values`` on ``axis`` for one series' ``summary_table``: tokens, or a window
    fraction with its tokens beside it (one model's lengths: one token count per fraction)."""
    if axis == TOKENS:
        return [length_text(value, TOKENS) for value in values]
    tokens = dict(zip(summary[FRACTION], summary[TOKENS]))
    return [length_cell(value, tokens[value]) for value in values]


def cell_counts(summary: pd.DataFrame, unit: str = "cell") -> str:
    """``"n = 10 per cell"`` or ``"n = 5-10 per cell"`` over cells (column ``n``) with at least one ok trial."""
    counts = summary.loc[summary["n"] > 0, "n"]
    if counts.empty:
        return "no completed trials"
    low, high = int(counts.min()), int(counts.max())
    return f"n = {low} per {unit}" if low == high else f"n = {low}–{high} per {unit}"


def plot_heatmap(
    df: pd.DataFrame, ax: Axes, model: str | None = None, task: str | None = None, by: str = "model"
) -> Axes:
    """Accuracy heatmap: needle depth (rows, 0% at top) x context length (columns: tokens, or the share of the
    model's window with its tokens where the records carry one, see ``report/data/lengths.py``).

    Cells are annotated with the accuracy in percent on a fixed 0-100% colour scale; cells with no
    completed trial are grey. ``model``/``task`` may be None when ``df`` holds only one.
    ``by="variant"`` selects ``model`` among the variants of ``add_variants`` instead of models.
    """
    model = select_one(df, by, model)
    task = select_one(df, "task", task)
    matrix = depth_length_matrix(df, model, task, by=by) * 100.0  # [depths, lengths] in percent
    summary = summary_table(df[(df[by].astype("str") == model) & (df["task"] == task)], by=by)
    labels = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.0f}%", otypes=[object])(matrix.to_numpy())
    ticks = [text.replace(" (", "\n(") for text in length_labels(summary, matrix.columns.name, matrix.columns)]
    ax.set_facecolor(_MISSING_CELL)
    sns.heatmap(
        matrix, ax=ax, vmin=0.0, vmax=100.0, cmap=HEATMAP_CMAP, annot=labels, fmt="",
        annot_kws={"fontsize": 9}, linewidths=0.8, linecolor="white",
        cbar_kws={"label": "accuracy (%)", "format": PercentFormatter(100, decimals=0)},
        xticklabels=ticks,
        yticklabels=[depth_label(d) for d in matrix.index],
    )
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0)
    ax.set_xlabel(AXIS_LABELS[matrix.columns.name])
    ax.set_ylabel("needle depth (% of context)")
    counts = cell_counts(summary)
    ax.set_title(f"Retrieval accuracy by needle depth and context length\n{model} · {task} ({counts})",
                 fontsize=11)
    return ax


def plot_accuracy_vs_depth(
    df: pd.DataFrame, ax: Axes, model: str | None = None, task: str | None = None, by: str = "model"
) -> Axes:
    """Accuracy (%) vs needle depth (%): one line per context length with Wilson 95% bands.

    Colours follow ``length_colors`` of every length in ``df`` (tokens, or window fractions where the records
    carry them), so charts of one report agree.
    ``by="variant"`` selects ``model`` among the variants of ``add_variants`` instead of models.
    """
    model = select_one(df, by, model)
    task = select_one(df, "task", task)
    axis = length_axis(df)
    colors = length_colors(df[axis].unique())
    summary = summary_table(df[(df[by].astype("str") == model) & (df["task"] == task)], by=by)
    summary = summary[summary["n"] > 0]
    markers = itertools.cycle(DEPTH_MARKERS)
    # fainter bands when many overlap, so they stay readable instead of turning grey
    alpha = float(np.clip(0.3 / max(summary[axis].nunique(), 1), 0.06, 0.18))
    for length, cells in summary.groupby(axis, sort=True):
        cells = cells.sort_values("depth")
        x = cells["depth"].to_numpy() * 100.0
        color = colors[length]
        ax.fill_between(x, cells["ci_low"] * 100.0, cells["ci_high"] * 100.0, color=color, alpha=alpha,
                        linewidth=0)
        ax.plot(x, cells["accuracy"] * 100.0, color=color, marker=next(markers), markersize=6,
                linewidth=2, label=length_labels(summary, axis, [length])[0], clip_on=False, zorder=3)
    depths = sorted(summary["depth"].unique().tolist())
    if 0 < len(depths) <= 11:
        ax.xaxis.set_major_locator(FixedLocator([d * 100.0 for d in depths]))
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=None))
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_xlim(-2.0, 102.0)
    ax.set_ylim(0.0, 100.0)
    ax.spines[["top", "right"]].set_visible(False)  # a line at 100% would hide under the top spine
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_xlabel("needle depth (% of context, 0% = start)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"Retrieval accuracy by needle depth (shaded: 95% CI)\n{model} · {task} "
                 f"({cell_counts(summary)})", fontsize=11)
    if not summary.empty:
        ax.legend(title=AXIS_LABELS[axis], loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return ax

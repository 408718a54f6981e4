"""Charts that put variants (models, layouts, runs) side by side; one ``plot_x(df, ax)`` per chart.

Each variant keeps one colour in every chart of a report (``variant_colors``, colour-blind-safe
palette, baseline first). Like ``charts.py``, nothing here touches pyplot's global state.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, PercentFormatter

from evalkit.report.charts.accuracy import LINE_PALETTE, depth_label, select_one
from evalkit.report.analysis.compare import comparison_table, pick_baseline
from evalkit.report.analysis.indices import DEFAULT_THRESHOLD, completed_trials, length_table, pooled_accuracy
from evalkit.report.data.labels import add_variants, variant_order
from evalkit.report.data.lengths import AXIS_LABELS, FRACTION, length_axis, length_text

DIFF_CMAP = "RdBu"  # diverging ColorBrewer map, safe for the common colour-vision deficiencies
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
_GRID = "#dddddd"


def variant_colors(variants: list[str]) -> dict[str, tuple[float, float, float]]:
    """A fixed colour per variant, in the order given (pass ``variant_order(df)`` for the report's)."""
    palette = sns.color_palette(LINE_PALETTE, max(len(variants), 1))
    return {v: palette[i % len(palette)] for i, v in enumerate(variants)}


def _with_variants(df: pd.DataFrame) -> pd.DataFrame:
    return df if "variant" in df.columns else add_variants(df)


def _style_percent_axis(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_ylim(0.0, 100.0)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_ylabel("accuracy (%)")


def plot_variants_by_length(
    df: pd.DataFrame, ax: Axes, task: str | None = None, threshold: float = DEFAULT_THRESHOLD
) -> Axes:
    """Accuracy over all depths (%) vs context length: one line per variant, Wilson 95% bands.

    Lengths sit at evenly spaced positions (they are usually powers of two); a dashed line marks
    ``threshold``, so the effective context length reads off where a line crosses it. Where the records are
    fractions of each model's window, the axis is that fraction, so models with different windows line up.
    """
    frame = _with_variants(df)
    task = select_one(frame, "task", task)
    table = length_table(frame[frame["task"] == task])
    axis = length_axis(frame[frame["task"] == task])
    lengths = sorted(table[axis].unique().tolist())
    position = {length: i for i, length in enumerate(lengths)}
    colors = variant_colors(variant_order(frame))
    for i, variant in enumerate(v for v in colors if v in set(table["variant"])):
        rows = table[table["variant"] == variant].sort_values(axis)
        x = rows[axis].map(position).to_numpy(dtype=float)
        ax.fill_between(x, rows["ci_low"] * 100, rows["ci_high"] * 100, color=colors[variant], alpha=0.12, linewidth=0)
        ax.plot(x, rows["accuracy"] * 100, color=colors[variant], marker=_MARKERS[i % len(_MARKERS)],
                linewidth=2, markersize=6, label=variant, clip_on=False, zorder=3)
    ax.axhline(threshold * 100, color="#444444", linestyle="--", linewidth=1.2, zorder=2,
               label=f"threshold {threshold * 100:.4g}%")
    ax.xaxis.set_major_locator(FixedLocator(list(range(len(lengths)))))
    ax.set_xticklabels([length_text(length, axis) for length in lengths])
    ax.set_xlim(-0.3, max(len(lengths) - 1, 0) + 0.3)
    _style_percent_axis(ax)
    ax.set_xlabel(AXIS_LABELS[axis])
    ax.set_title(f"Accuracy over all depths by context length (shaded: 95% CI)\n{task}", fontsize=11)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), frameon=False, ncol=1 if len(colors) > 3 else 2)
    return ax


def plot_variants_vs_depth(
    df: pd.DataFrame, ax: Axes, context_length: int, task: str | None = None, legend: bool = True
) -> Axes:
    """Accuracy (%) vs needle depth at one context length: one line per variant, Wilson 95% bands.

    Draw one per length on a row of axes (shared y) for a faceted comparison; pass ``legend=False``
    and put one legend on the figure (``ax.get_legend_handles_labels()``) to keep the data visible.
    ``context_length`` is a value of the report's length axis: tokens, or a fraction of each model's window
    where the records carry one (``report/data/lengths.py``).
    """
    frame = _with_variants(df)
    task = select_one(frame, "task", task)
    axis = length_axis(frame[frame["task"] == task])
    sub = frame[(frame["task"] == task) & (frame[axis] == context_length)]
    if sub.empty:
        raise ValueError(f"no trials at context length {context_length} for task {task!r}")
    cells = pooled_accuracy(completed_trials(sub), ["variant", "depth"])
    colors = variant_colors(variant_order(frame))
    for i, variant in enumerate(v for v in colors if v in set(cells["variant"])):
        rows = cells[cells["variant"] == variant].sort_values("depth")
        x = rows["depth"].to_numpy() * 100
        ax.fill_between(x, rows["ci_low"] * 100, rows["ci_high"] * 100, color=colors[variant], alpha=0.12, linewidth=0)
        ax.plot(x, rows["accuracy"] * 100, color=colors[variant], marker=_MARKERS[i % len(_MARKERS)],
                linewidth=2, markersize=6, label=variant, clip_on=False, zorder=3)
    depths = sorted(cells["depth"].unique().tolist())
    if 0 < len(depths) <= 6:
        ax.xaxis.set_major_locator(FixedLocator([d * 100 for d in depths]))
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=None))
    ax.set_xlim(-3.0, 103.0)
    _style_percent_axis(ax)
    ax.set_xlabel("needle depth (% of context)")
    ax.set_title(f"{length_text(context_length, axis)} of the window" if axis == FRACTION
                 else f"{int(context_length):,} tokens", fontsize=11)
    if legend:
        ax.legend(loc="lower left", frameon=True, framealpha=0.9, fontsize=8)
    return ax


def _points(value: float) -> str:
    """``12.4 -> "+12"``, ``-3 -> "−3"`` (typographic minus), ``0.2 -> "0"``."""
    rounded = round(value)
    return "0" if rounded == 0 else f"{rounded:+d}".replace("-", "−")


def plot_accuracy_difference(
    df: pd.DataFrame, ax: Axes, variant: str | None = None, baseline: str | None = None, task: str | None = None
) -> Axes:
    """Heatmap of ``variant`` minus ``baseline`` accuracy (points) per depth (rows) x length (columns).

    Blue: the variant finds more, red: fewer; fixed -100..+100 scale; cells where the 95%
    difference interval excludes 0 are marked with ``*``. Defaults: the first variant is the
    baseline and ``variant`` the only other one.
    """
    frame = _with_variants(df)
    task = select_one(frame, "task", task)
    baseline = pick_baseline(frame, baseline)
    diffs = comparison_table(frame[frame["task"] == task], baseline)
    variant = select_one(diffs, "variant", variant) if not diffs.empty else select_one(frame, "variant", variant)
    diffs = diffs[diffs["variant"] == variant]
    if diffs.empty:
        raise ValueError(f"{variant!r} and {baseline!r} share no tested cell for task {task!r}")
    axis = length_axis(frame[frame["task"] == task])
    matrix = diffs.pivot(index="depth", columns=axis, values="difference").sort_index() * 100
    sure = diffs.pivot(index="depth", columns=axis, values="diff_low").reindex_like(matrix) > 0
    sure |= diffs.pivot(index="depth", columns=axis, values="diff_high").reindex_like(matrix) < 0
    labels = np.empty(matrix.shape, dtype=object)
    for (r, c), value in np.ndenumerate(matrix.to_numpy()):
        labels[r, c] = "" if np.isnan(value) else _points(value) + ("*" if sure.iloc[r, c] else "")
    ax.set_facecolor("#e6e6e6")
    sns.heatmap(matrix, ax=ax, vmin=-100, vmax=100, cmap=DIFF_CMAP, annot=labels, fmt="",
                annot_kws={"fontsize": 9}, linewidths=0.8, linecolor="white",
                cbar_kws={"label": "difference (percentage points)"},
                xticklabels=[length_text(c, axis) for c in matrix.columns],
                yticklabels=[depth_label(d) for d in matrix.index])
    ax.tick_params(axis="both", labelrotation=0)
    ax.set_xlabel(AXIS_LABELS[axis])
    ax.set_ylabel("needle depth (% of context)")
    ax.set_title(f"Accuracy difference (points): {variant}\nminus {baseline} · {task}  (* = 95% CI excludes 0)",
                 fontsize=10)
    return ax

"""The "Does a fix help?" chart: accuracy by position, the baseline and each mitigation arm overlaid.

Like the other chart modules, one ``plot_x(df, ax)`` function that draws on the axes it is given and touches
no pyplot state.
"""

from __future__ import annotations

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from evalkit.report.charts.accuracy import LINE_PALETTE

_BASELINE_COLOR = "#222222"


def plot_arm_curves(curves: pd.DataFrame, ax: Axes, model: str, task: str) -> Axes:
    """Accuracy (%) vs the requested position of the fact (depth) per arm of ``model`` x ``task``: the
    baseline ``none`` in black, each arm in its own colour, Wilson 95% bands (``arm_curves``' table)."""
    rows = curves[(curves["model"] == model) & (curves["task"] == task)]
    arms = list(dict.fromkeys(rows["mitigation"]))
    palette = sns.color_palette(LINE_PALETTE, max(len(arms), 1))
    for index, arm in enumerate(arms):
        line = rows[rows["mitigation"] == arm].sort_values("depth")
        color = _BASELINE_COLOR if arm == "none" else palette[index % len(palette)]
        x = line["depth"].to_numpy(dtype=float) * 100
        ax.plot(x, line["accuracy"].to_numpy(dtype=float) * 100, marker="o", color=color,
                linewidth=2.2 if arm == "none" else 1.6, linestyle="-" if arm == "none" else "--",
                label="none (baseline)" if arm == "none" else arm)
        ax.fill_between(x, line["ci_low"].to_numpy(dtype=float) * 100, line["ci_high"].to_numpy(dtype=float) * 100,
                        color=color, alpha=0.12, linewidth=0)
    ax.set_xlim(-3, 103)
    ax.set_ylim(0, 100)
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_xlabel("requested position of the fact (depth)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"{model} · {task}")
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(frameon=False, fontsize="small")
    return ax

"""The "where is it safe" strip: one row per tested length, needle depth on x, green / amber / red per depth.

Colours follow ``decision.verdict_of`` (each depth's Wilson 95% interval: green by its lower end, red by its
upper end); they are the Okabe-Ito green, orange and vermillion, told apart by people with the common colour-vision deficiencies, and
each cell also prints its accuracy so the chart reads without colour.
"""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import FixedLocator, PercentFormatter

from evalkit.report.data.documents import fraction_position, position_axis_label
from evalkit.report.analysis.decision import (
    DANGER,
    DANGER_UPPER_BOUND,
    SAFE,
    SAFE_LOWER_BOUND,
    UNSURE,
    ModelDecision,
)

VERDICT_COLORS = {SAFE: "#009E73", UNSURE: "#E69F00", DANGER: "#D55E00"}
VERDICT_LABELS = {
    SAFE: f"safe: 95% CI lower bound ≥ {SAFE_LOWER_BOUND:.0%}",
    UNSURE: "too few trials to call",
    DANGER: f"danger: upper bound < {DANGER_UPPER_BOUND:.0%}",
}


def strip_size(decision: ModelDecision) -> tuple[float, float]:
    """Figure size (inches) for ``decision``'s strip: a short band per tested length."""
    return 8.5, 1.25 + 0.42 * max(len(decision.lengths), 1)


def _edges(depths: list[float]) -> np.ndarray:
    """Cell boundaries: midpoints between tested depths, closed at 0 and 1."""
    values = np.asarray(depths, dtype=float)
    middles = (values[1:] + values[:-1]) / 2.0
    return np.concatenate([[0.0], middles, [1.0]]) if len(values) else np.array([0.0, 1.0])


def plot_safety_strip(decision: ModelDecision, ax: Axes) -> Axes:
    """Draw one model's strip on ``ax``: rows = lengths (shortest on top), cells = tested depths."""
    for row, length in enumerate(decision.lengths):
        cells = length.cells
        edges = _edges([c.depth for c in cells])
        for cell, left, right in zip(cells, edges[:-1], edges[1:]):
            ax.add_patch(Rectangle((left, row + 0.08), right - left, 0.84, facecolor=VERDICT_COLORS[cell.verdict],
                                   edgecolor="white", linewidth=1.0))
            if right - left > 0.045:
                ax.text((left + right) / 2, row + 0.5, f"{cell.accuracy * 100:.0f}", ha="center", va="center",
                        fontsize=7.5, color="white" if cell.verdict != UNSURE else "black")
    ax.set_xlim(0, 1)
    ax.set_ylim(len(decision.lengths), 0)
    ax.yaxis.set_major_locator(FixedLocator([i + 0.5 for i in range(len(decision.lengths))]))
    ax.set_yticklabels([f"{v.context_length:,}" for v in decision.lengths])
    total = decision.documents_total
    if total is None:
        ax.xaxis.set_major_formatter(PercentFormatter(1.0))
        ax.set_xlabel("needle depth (fraction of the haystack before the fact); numbers: accuracy %")
    else:  # documents tasks: a tick per tested gold position, 1-based
        depths = sorted({c.depth for v in decision.lengths for c in v.cells})
        ax.set_xticks(depths, [str(fraction_position(d, total)) for d in depths])
        ax.set_xlabel(f"{position_axis_label(total)}; numbers: accuracy %")
    ax.set_ylabel("tokens")
    ax.set_title(f"Where is it safe? {decision.variant}", fontsize=10, loc="left")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax


def legend_handles() -> list[Patch]:
    """One patch per colour, for a figure legend below the strip."""
    return [Patch(color=VERDICT_COLORS[v], label=VERDICT_LABELS[v]) for v in (SAFE, UNSURE, DANGER)]

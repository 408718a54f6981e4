"""Charts of why facts are missed: failure types per position band, and accuracy against measured similarity.

One ``plot_x(table, ax, ...)`` per chart, drawing on the axes it is given (no pyplot state), from the tables of
``analysis/failure_mix.py`` and ``analysis/content_axes.py``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import PercentFormatter

from evalkit.report.analysis.content_axes import SIMILARITY_BINS
from evalkit.report.analysis.failure_mix import FAILURE_WORDS
from evalkit.report.analysis.indices import BAND_NAMES
from evalkit.report.charts.accuracy import LINE_PALETTE
from evalkit.types import FAILURE_TYPES

# Okabe-Ito colours, readable with the common colour-vision deficiencies; correct answers stay pale
FAILURE_COLORS: dict[str, str] = {
    "correct": "#dddddd", "distractor": "#d55e00", "other_in_prompt": "#e69f00", "absent": "#cc79a7",
    "partial": "#56b4e9", "format": "#0072b2", "truncated": "#000000",
}


def plot_failure_mix(mix: pd.DataFrame, ax: Axes, key: str, by: str = "variant") -> Axes:
    """One bar per position band of ``key`` (a value of ``by``), stacked by failure type: each type's share of the
    band's trials, correct answers at the bottom, n under each bar (``failure_mix``'s table)."""
    rows = mix[mix[by].astype("str") == key]
    bands = [b for b in BAND_NAMES if b in set(rows["band"])]
    present = [f for f in FAILURE_TYPES if rows.loc[rows["failure"] == f, "count"].sum() > 0]
    bottom = np.zeros(len(bands))
    for failure in present:
        share = np.array([float(rows.loc[(rows["band"] == b) & (rows["failure"] == failure), "share"].sum())
                          for b in bands]) * 100
        ax.bar(range(len(bands)), share, bottom=bottom, color=FAILURE_COLORS[failure], edgecolor="white",
               linewidth=0.6, label=FAILURE_WORDS[failure][0])
        bottom += share
    trials = [int(rows.loc[rows["band"] == b, "trials"].iloc[0]) for b in bands]
    ax.set_xticks(range(len(bands)), [f"{b}\nn={n}" for b, n in zip(bands, trials)])
    ax.set_ylim(0, 100)
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_xlabel("position of the fact (depth band)")
    ax.set_ylabel("share of trials (%)")
    ax.set_title(key, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return ax


def plot_accuracy_vs_similarity(table: pd.DataFrame, ax: Axes, model: str) -> Axes:
    """Accuracy (%) per similarity bin (mean measured overlap on x), one line per position band, Wilson 95% bars
    (``similarity_table``'s rows of ``model``)."""
    rows = table[table["model"].astype("str") == model]
    bands = [b for b in BAND_NAMES if b in set(rows["band"])]
    palette = sns.color_palette(LINE_PALETTE, max(len(bands), 1))
    bins = [b[0] for b in SIMILARITY_BINS]
    for index, (color, band) in enumerate(zip(palette, bands)):
        line = rows[rows["band"] == band]
        line = line.assign(_bin=line["similarity"].map(bins.index)).sort_values("_bin")
        dodge = (index - (len(bands) - 1) / 2) * 0.8  # bands at the same overlap stay apart
        x = line["overlap"].to_numpy(dtype=float) * 100 + dodge
        y = line["accuracy"].to_numpy(dtype=float) * 100
        low, high = line["ci_low"].to_numpy(dtype=float) * 100, line["ci_high"].to_numpy(dtype=float) * 100
        err = np.vstack([y - low, high - y])
        ax.errorbar(x, y, yerr=err, marker="o", color=color, capsize=3, linewidth=1.6, label=band)
    ax.set_xlim(-3, 103)
    ax.set_ylim(0, 103)
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=0))
    ax.set_xlabel("question's content words found in the needle (measured overlap)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title(model, fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.legend(title="depth band", frameon=False, fontsize="small")
    return ax

"""Attention charts: one ``plot_x(table, ax, model, task)`` per chart, drawn from the tables of ``attention.py``.

Like ``charts.py``, nothing here touches pyplot's global state; colours per context length come from
``length_colors`` so they agree with the accuracy charts of the same report.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.ticker import FixedLocator, FuncFormatter, PercentFormatter

from evalkit.report.charts.accuracy import HEATMAP_CMAP, DEPTH_MARKERS, depth_label, length_colors


def _series(table: pd.DataFrame, model: str, task: str) -> pd.DataFrame:
    return table[(table["model"] == model) & (table["task"] == task)]


def _depth_axis(ax: Axes, depths) -> None:
    depths = sorted(set(float(d) for d in depths))
    if 0 < len(depths) <= 11:
        ax.xaxis.set_major_locator(FixedLocator([d * 100.0 for d in depths]))
    ax.xaxis.set_major_formatter(PercentFormatter(100, decimals=None))
    ax.set_xlim(-2.0, 102.0)
    ax.set_xlabel("needle depth (% of context, 0% = start)")
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.spines[["top", "right"]].set_visible(False)


def plot_needle_mass_vs_depth(table: pd.DataFrame, ax: Axes, model: str, task: str, relative: bool = False) -> Axes:
    """Needle mass of the answer step (mean over layers and heads) vs needle depth, one line per context length,
    shaded 95% t intervals over trials. ``relative``: mass per needle token relative to a uniform spread
    (1 = the needle gets exactly its share of the keys), on a log scale."""
    sub = _series(table, model, task)
    colors = length_colors(table["context_length"].unique())
    column, low, high = ("vs_uniform", "vs_uniform_low", "vs_uniform_high") if relative else \
        ("needle_mass", "mass_low", "mass_high")
    scale = 1.0 if relative else 100.0
    markers = itertools.cycle(DEPTH_MARKERS)
    for length, cells in sub.groupby("context_length", sort=True):
        cells = cells.sort_values("depth")
        x = cells["depth"].to_numpy() * 100.0
        color = colors[int(length)]
        ax.fill_between(x, cells[low] * scale, cells[high] * scale, color=color, alpha=0.15, linewidth=0)
        ax.plot(x, cells[column] * scale, color=color, marker=next(markers), linewidth=2, label=f"{int(length):,}")
    _depth_axis(ax, sub["depth"])
    if relative:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        span = np.nanmax(sub[column]) / max(np.nanmin(sub[column]), 1e-12) if not sub.empty else 100.0
        # under a decade there is at most one major tick: label the minor ones too
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, p: _minor_times(v, p, every=span < 10)))
        ax.axhline(1.0, color="#555555", linewidth=1, linestyle="--")
        ax.set_ylabel("needle mass / uniform share (log)")
        ax.set_title("Per needle token, relative to a uniform spread\n(dashed: uniform)", fontsize=10)
    else:
        ax.set_ylim(bottom=0.0)
        ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=1))
        ax.set_ylabel("attention on the needle (% of the answer step)")
        ax.set_title(f"Needle attention mass by depth (mean of layers x heads; shaded: 95% CI)\n{model} · {task}",
                     fontsize=10)
    ax.legend(title="context length", frameon=False, fontsize=8, title_fontsize=8)
    return ax


def plot_layer_depth(table: pd.DataFrame, ax: Axes, model: str, task: str, length: int, vmax: float) -> Axes:
    """Heatmap: layer (rows, first layer on top) x needle depth (columns) of needle mass, one context length."""
    sub = _series(table, model, task)
    sub = sub[sub["context_length"] == length]
    matrix = sub.pivot(index="layer", columns="depth", values="needle_mass") * 100.0
    sns.heatmap(matrix, ax=ax, vmin=0.0, vmax=vmax * 100.0, cmap=HEATMAP_CMAP, linewidths=0.0,
                cbar_kws={"label": "needle mass (%)", "format": PercentFormatter(100, decimals=0)},
                xticklabels=[depth_label(d) for d in matrix.columns],
                yticklabels=[str(i) if i % 5 == 0 else "" for i in matrix.index])
    ax.tick_params(axis="y", labelrotation=0)
    ax.tick_params(axis="x", labelrotation=0)
    ax.set_xlabel("needle depth")
    ax.set_ylabel("layer")
    ax.set_title(f"{int(length):,} tokens", fontsize=10)
    return ax


def plot_attention_bins(table: pd.DataFrame, ax: Axes, model: str, task: str, with_sink: bool = True) -> Axes:
    """The attention U-curve: mass of the answer step by position in the prompt, one line per context length.

    ``with_sink``: every position in prompt order (sink, preamble, haystack bins, question) as a share of all
    attention, log scale. Without: only the haystack bins, each as a share of the attention not on the sink."""
    sub = _series(table, model, task)
    colors = length_colors(table["context_length"].unique())
    markers = itertools.cycle(DEPTH_MARKERS)
    labels = list(sub.sort_values("position")["region"].drop_duplicates())
    if not with_sink:
        labels = [r for r in labels if r.startswith("bin_")]
    x = _positions(labels)
    for length, rows in sub.groupby("context_length", sort=True):
        rows = rows.set_index("region").loc[labels]
        y = rows["share" if with_sink else "share_without_sink"].to_numpy() * 100.0
        ax.plot(x, y, color=colors[int(length)], marker=next(markers), markersize=4, linewidth=1.8,
                label=f"{int(length):,}")
    bins = [i for i, r in enumerate(labels) if r.startswith("bin_")]
    ticks = [i for i, r in enumerate(labels) if not r.startswith("bin_")] + [bins[0], bins[-1]]
    names = {labels[bins[0]]: "haystack\nbin 1", labels[bins[-1]]: f"haystack\nbin {len(bins)}"}
    ax.set_xticks([x[i] for i in ticks], [names.get(labels[i], labels[i]) for i in ticks], fontsize=8)
    ax.grid(True, color="#dddddd", linewidth=0.8)
    ax.spines[["top", "right"]].set_visible(False)
    if with_sink:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}%"))
        ax.set_ylabel("share of all attention (log)")
        ax.set_title(f"With the sink: every position in prompt order\n{model} · {task}", fontsize=10)
    else:
        ax.set_ylim(bottom=0.0)
        ax.yaxis.set_major_formatter(PercentFormatter(100, decimals=None))
        ax.set_ylabel("share of the attention not on the sink")
        ax.set_title(f"Without the sink: haystack in {len(bins)} equal bins", fontsize=10)
    ax.legend(title="context length", frameon=False, fontsize=8, title_fontsize=8)
    return ax


def _minor_times(value: float, _position, every: bool = False) -> str:
    """Label the 2x and 5x minor ticks of a log axis (``0.2x``, ``5x``), or ``every`` one."""
    if value <= 0:
        return ""
    mantissa = round(value / 10 ** np.floor(np.log10(value)), 6)
    return f"{value:g}x" if every or mantissa in (2.0, 5.0) else ""


def _positions(labels: list[str]) -> list[float]:
    """x of each position: bins one apart; the regions outside the haystack set apart by a gap of 3."""
    x, current, previous_bin = [], -1.0, None
    for label in labels:
        is_bin = label.startswith("bin_")
        current += 1.0 if (is_bin and previous_bin) or previous_bin is None else 3.0
        x.append(current)
        previous_bin = is_bin
    return x


def plot_head_scores(heads: pd.DataFrame, ax: Axes, model: str, task: str, column: str = "auroc") -> Axes:
    """Heatmap layer x head of ``auroc`` (needle mass separating correct from wrong; 0.5 = no separation,
    diverging colours) or ``retrieval_score`` (Wu et al. 2024, 0 to 1)."""
    sub = _series(heads, model, task)
    matrix = sub.pivot(index="layer", columns="head", values=column)
    if column == "auroc":
        options = dict(vmin=0.0, vmax=1.0, center=0.5, cmap="vlag", cbar_kws={"label": "AUROC"})
        title = "Per-head AUROC: needle mass, correct vs wrong"
    else:
        top = float(np.nanmax(matrix.to_numpy())) if np.isfinite(matrix.to_numpy()).any() else 1.0
        options = dict(vmin=0.0, vmax=max(top, 1e-3), cmap=HEATMAP_CMAP, cbar_kws={"label": "retrieval score"})
        title = "Per-head retrieval score (Wu et al. 2024)"
    sns.heatmap(matrix, ax=ax, linewidths=0.0, yticklabels=[str(i) if i % 5 == 0 else "" for i in matrix.index],
                **options)
    ax.tick_params(axis="y", labelrotation=0)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(f"{title}\n{model} · {task}", fontsize=10)
    return ax

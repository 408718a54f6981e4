"""The report's sections as document blocks (``doc.py``), built once for Markdown and HTML.

``ReportData`` holds every table the sections read; ``render.write_report`` computes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.report.document.blocks import Block, Bullets, Code, Details, Heading, Image, Para, Strong, Table
from evalkit.report.document.run_environment import environment_items, trial_time_item
from evalkit.report.document.findings import (
    pct,
    pct_below,
    points_ci,
    tokens,
)
from evalkit.report.analysis.completeness import missing_cells, planned_trials
from evalkit.report.analysis.indices import BANDS, DEFAULT_THRESHOLD
from evalkit.report.data.labels import VARIANT_SEPARATOR, control_labels, layout_labels, run_labels, variant_order
from evalkit.report.data.lengths import AXIS_LABELS, FRACTION, TOKENS, length_text
from evalkit.report.data.untrained import UNTRAINED_NOTE, is_untrained


@dataclass(frozen=True)
class ReportData:
    """Everything a report shows, computed from the records of ``dirs``."""

    dirs: tuple[Path, ...]
    headers: tuple[dict, ...]
    df: pd.DataFrame  # all records (controls included) with a ``variant`` column
    summary: pd.DataFrame  # summary_table(by="variant") plus ``model``
    bands: pd.DataFrame  # band_table
    indices: pd.DataFrame  # position_indices
    effective: pd.DataFrame  # effective_context_length
    lengths: pd.DataFrame  # length_comparison (empty with one variant)
    cells: pd.DataFrame  # comparison_table (empty with one variant)
    controls: pd.DataFrame  # control_rates (empty without control trials)
    threshold: float
    variants: tuple[str, ...]  # baseline first
    tasks: tuple[str, ...] = field(default=())
    # documents tasks (analysis/document_positions.py): accuracy per gold position, paired position comparisons
    positions: pd.DataFrame = field(default_factory=pd.DataFrame)
    position_pairs: pd.DataFrame = field(default_factory=pd.DataFrame)
    # untrained controls (``init: random``, data/untrained.py): their labels, and every record with them (``df`` and
    # every table above hold the trained models' only)
    untrained: frozenset[str] = frozenset()
    all_records: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def document_tasks(self) -> frozenset[str]:
        """Tasks whose position axis is the gold document position."""
        return frozenset(map(str, self.positions["task"])) if not self.positions.empty else frozenset()

    @property
    def compares(self) -> bool:
        """Whether there is more than one variant to compare."""
        return len(self.variants) > 1


def ci_cell(accuracy: float, low: float, high: float, n: int | None = None) -> str:
    """``"41% [30–53]"`` or with ``n``: ``"41% [30–53] (n=60)"``."""
    if pd.isna(accuracy):
        return "–" if n is None else f"– (n={int(n)})"
    text = f"{accuracy * 100:.0f}% [{low * 100:.0f}–{high * 100:.0f}]"
    return text if n is None else f"{text} (n={int(n)})"


def series_label(data: ReportData, variant: str, task: str) -> str:
    """``"model"`` or ``"model · task"`` when the report holds several tasks."""
    return variant + VARIANT_SEPARATOR + task if len(data.tasks) > 1 else variant


# ---------------------------------------------------------------------------- summary


CONTROL_MEANING = {
    "closed_book": "without the needle in the prompt (what the model knows or guesses)",
    "oracle": "with the needle and no haystack (the ceiling for this question)",
}
_CONTROL_SHORT = {"closed_book": "without the needle (closed book", "oracle": "with the needle alone (oracle"}


def control_sentence(rows: pd.DataFrame) -> str:
    """One variant x task's rows of ``control_rates`` in words."""
    parts = []
    for r in rows.itertuples(index=False):
        what = _CONTROL_SHORT.get(r.control, f"in {r.control} trials ({r.control}")
        interval = "" if pd.isna(r.accuracy) else f", 95% CI {r.ci_low * 100:.0f}–{r.ci_high * 100:.0f}%"
        parts.append(f"{pct(r.accuracy)} correct {what}{interval}, n={r.n})")
    return "; ".join(parts) + "."


def trust_warnings(data: ReportData) -> list[Block]:
    """A warning per run that loaded a model with ``trust_remote_code`` on."""
    out: list[Block] = []
    labels = run_labels([str(d) for d in data.dirs])
    for run_dir, header in zip(data.dirs, data.headers):
        trusted = sorted(m for m, on in (header.get("trust_remote_code") or {}).items() if on)
        if trusted:
            names: list = []
            for i, model in enumerate(trusted):
                names += ([", "] if i else []) + [Code(model)]
            out.append(Para((Strong("trust_remote_code was ON"), f" in run {labels[str(run_dir)]} for ", *names,
                             ": Python code from the model repository ran on the machine that ran the eval."),
                            kind="warning"))
    return out


# ---------------------------------------------------------------------------- runs


def runs_blocks(data: ReportData) -> list[Block]:
    """Run metadata: trial counts, config and hash, seed, models with revisions, versions, trust_remote_code,
    hardware, each model's parameters, chat template hash and special tokens, the end and evaluation time."""
    blocks: list[Block] = [Heading(2, "Runs", "runs")]
    labels = run_labels([str(d) for d in data.dirs])
    records = data.all_records if not data.all_records.empty else data.df  # untrained controls included
    for run_dir, header in zip(data.dirs, data.headers):
        rows = records[records["run_dir"] == str(run_dir)]
        ok = int((rows["status"] == "ok").sum())
        controls = int((control_labels(rows) != "").sum())
        models = header.get("models") or {}
        model_items: list = []
        for i, (model, revision) in enumerate(sorted(models.items())):
            model_items += ([", "] if i else []) + [Code(model), " @ ", Code(revision or "default")]
        versions = header.get("versions") or {}
        untrained = set(map(str, rows.loc[is_untrained(rows, data.untrained).to_numpy(), "variant"]))
        variants = [f"{v} (untrained control: {UNTRAINED_NOTE})" if v in untrained else v
                    for v in sorted(set(map(str, rows["variant"])), key=variant_order(records).index)]
        planned = planned_trials(header)
        blocks += [Heading(3, labels[str(run_dir)]), Bullets((
            ("directory: ", Code(str(run_dir))),
            f"trials: {ok} ok, {len(rows) - ok} skipped"
            + (f" ({controls} of them control trials)" if controls else "")
            + (f"; {len(rows)} of {planned} planned recorded" if planned is not None else ""),
            ("config: ", Code(str(header.get("config_path", "?"))),
             " (hash ", Code(str(header.get("config_hash", "?"))),
             f"), seed {header.get('seed', '?')}, started {header.get('started_at', '?')}"),
            ("models: ", *(model_items or ["?"])),
            _trust_item(header),
            f"evalkit {header.get('evalkit_version', '?')}; "
            + (", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "versions unknown"),
            *environment_items(header),
            *filter(None, [trial_time_item(rows)]),
            "shown as: " + ", ".join(variants),
        ))]
        blocks += _missing_blocks(rows, header, planned)
    if len({h.get("config_hash") for h in data.headers}) > 1:
        blocks.append(Para("These runs use different configs (their hashes differ): compare them cell by cell, "
                           "on the lengths and depths both tested.", kind="note"))
    return blocks


_MISSING_SHOWN = 20  # cells listed in the report; the count covers them all


def _missing_blocks(rows: pd.DataFrame, header: dict, planned: int | None) -> list[Block]:
    """A warning and the cells that lack trials, when the run recorded fewer trials than it planned."""
    missing = missing_cells(rows, header)
    if missing.empty:
        return []
    lacking = int((missing["planned"] - missing["recorded"]).sum())
    text = (f"Incomplete run: {lacking} of {planned} planned trials have no record (the run was stopped, is still "
            f"running, or crashed); the {len(missing)} cells below hold fewer trials than planned, and their "
            "rates rest on fewer samples. Rerun the same command to finish it.")
    table_rows = tuple(
        (r.model, r.task, r.control or "-", r.layout or "-", str(r.context_length),
         "-" if r.depth is None or pd.isna(r.depth) else f"{r.depth:g}", str(r.recorded), str(r.planned))
        for r in missing.head(_MISSING_SHOWN).itertuples(index=False)
    )
    caption = f"first {_MISSING_SHOWN} of {len(missing)} partial cells" if len(missing) > _MISSING_SHOWN else ""
    return [Para(text, kind="warning"),
            Table(("model", "task", "control", "layout", "length", "depth", "recorded", "planned"), table_rows,
                  (False, False, False, False, True, True, True, True), caption)]


def _trust_item(header: dict) -> tuple:
    flags = header.get("trust_remote_code")
    if not isinstance(flags, dict):
        return ("trust_remote_code: not recorded in this run's header",)
    on = sorted(m for m, value in flags.items() if value)
    if not on:
        return ("trust_remote_code: off for every model",)
    return (Strong("trust_remote_code: ON"), " for " + ", ".join(on))


# ---------------------------------------------------------------------------- comparison


def comparison_blocks(data: ReportData, charts: dict[str, list[Path]]) -> list[Block]:
    """Variants side by side per task: length and depth charts, difference heatmaps, tables."""
    if not data.compares:
        return []
    baseline = data.variants[0]
    blocks: list[Block] = [
        Heading(2, "Comparison", "comparison"),
        Para(f"Variants: {', '.join(data.variants)}. Differences are each variant minus the baseline "
             f"({baseline}), in percentage points, on the cells both tested; brackets hold the 95% interval "
             "(Newcombe). " + _variant_rule(data)),
    ]
    for task in data.tasks:
        if len(data.tasks) > 1:
            blocks.append(Heading(3, f"Task {task}"))
        for png in [p for p in charts.get(task, []) if p.suffix == ".png"]:
            blocks.append(Image(png, _comparison_alt(png.name, task), wide=True))
        rows = data.lengths[data.lengths["task"] == task]
        axis = AXIS_LABELS[FRACTION if FRACTION in data.lengths.columns else TOKENS]
        if not rows.empty:
            blocks.append(Table(
                ("variant", axis, "accuracy", "baseline accuracy", "difference [95% CI]"),
                tuple((r.variant, compared_length(r), f"{pct(r.accuracy)} (n={r.n})",
                       f"{pct(r.baseline_accuracy)} (n={r.baseline_n})",
                       points_ci(r.difference, r.diff_low, r.diff_high))
                      for r in rows.itertuples(index=False)),
                (False, True, True, True, True),
                caption=f"Accuracy over all shared depths, per context length; baseline: {baseline}"))
        cells = data.cells[data.cells["task"] == task]
        if not cells.empty:
            blocks.append(Details("Every cell: accuracy difference per context length and depth", (Table(
                ("variant", "context length", "depth", "accuracy", "baseline", "difference [95% CI]"),
                tuple((r.variant, compared_length(r), f"{r.depth * 100:.4g}%", pct(r.accuracy),
                       pct(r.baseline_accuracy), points_ci(r.difference, r.diff_low, r.diff_high))
                      for r in cells.itertuples(index=False)),
                (False, True, True, True, True, True)),)))
    return blocks


def compared_length(row) -> str:
    """A comparison row's length: its tokens, or the window fraction both sides share with each side's tokens."""
    fraction = getattr(row, FRACTION, None)
    if fraction is None:
        return f"{row.context_length:,}"
    return f"{length_text(fraction, FRACTION)} ({row.context_length:,} vs {row.baseline_context_length:,} tokens)"


def _variant_rule(data: ReportData) -> str:
    """How the variants were formed (see ``add_variants``)."""
    if (layout_labels(data.df) != "").any():
        return "Variants are model · prompt layout, from the layout recorded with each trial."
    if data.df["variant"].astype("str").str.contains(VARIANT_SEPARATOR, regex=False).any():
        return ("A model found in several run directories appears once per run directory, labelled with the "
                "directory's name.")
    return "Each variant is one model."


def _comparison_alt(name: str, task: str) -> str:
    if name.startswith("compare_by_length"):
        return f"Accuracy over all depths by context length, per variant · {task}"
    if name.startswith("compare_by_depth"):
        return f"Accuracy by needle depth at each context length, per variant · {task}"
    return f"Accuracy difference to the baseline by depth and length · {task}"


# ---------------------------------------------------------------------------- positions


def positions_blocks(data: ReportData) -> list[Block]:
    """Primacy and recency indices, worst band and effective context length."""
    middle = next(b for b in BANDS if b.name == "middle")
    blocks: list[Block] = [
        Heading(2, "Where in the prompt: position indices", "positions"),
        Para(f"Bands of needle depth: {', '.join(b.label for b in BANDS)}. Primacy index = accuracy in the start "
             f"band minus the {middle.label} band; recency index = end band minus the middle band (percentage "
             "points, 95% interval in brackets; positive = that end beats the middle). Worst band = the band with "
             "the lowest accuracy. Bands with no tested depth are left out."),
    ]
    if data.indices.empty:
        return blocks + [Para("No completed placement trials.")]
    if data.document_tasks:
        blocks.append(Para(f"Documents tasks ({', '.join(sorted(data.document_tasks))}) are compared by gold "
                           "document position instead, in the section Accuracy by gold document position.",
                           kind="note"))
    for (variant, task), group in data.indices.groupby(["variant", "task"], sort=False):
        if task in data.document_tasks:
            continue
        rows = tuple((f"{r.context_length:,}", f"{pct(r.accuracy)} (n={r.n})", pct(r.start_accuracy),
                      pct(r.middle_accuracy), pct(r.end_accuracy),
                      points_ci(r.primacy, r.primacy_low, r.primacy_high, unit=False),
                      points_ci(r.recency, r.recency_low, r.recency_high, unit=False), _worst_cell(data, r))
                     for r in group.itertuples(index=False))
        blocks.append(Table(("context length (tokens)", "accuracy (all depths)", "start", "middle", "end",
                             "primacy [95% CI]", "recency [95% CI]", "worst band [95% CI]"),
                            rows, (True,) * 7 + (False,), caption=series_label(data, variant, task)))
    blocks += [Heading(2, "Effective context length", "effective-length"),
               Para(f"The longest tested length whose accuracy over all depths stays at or above "
                    f"{_threshold_text(data.threshold)}, at that length and every shorter one.")]
    blocks.append(Table(("variant", "effective context length", "lengths tested", "note"), tuple(
        (series_label(data, r.variant, r.task),
         "none" if pd.isna(r.effective_length) else (("≥ " if r.beyond_tested else "") + tokens(r.effective_length)),
         f"{r.shortest_tested:,}–{r.longest_tested:,}", _effective_note(r))
        for r in data.effective.itertuples(index=False)), (False, True, True, False)))
    return blocks


def _threshold_text(threshold: float) -> str:
    """``"85.6% (RULER's threshold)"`` or ``"95% (set with --threshold; RULER uses 85.6%)"``."""
    if abs(threshold - DEFAULT_THRESHOLD) < 1e-12:
        return f"{threshold * 100:.4g}% (RULER's threshold)"
    return f"{threshold * 100:.4g}% (set with --threshold; RULER uses {DEFAULT_THRESHOLD * 100:.4g}%)"


def _worst_cell(data: ReportData, row) -> str:
    bands = data.bands[(data.bands["variant"] == row.variant) & (data.bands["task"] == row.task)
                       & (data.bands["context_length"] == row.context_length)]
    if len(bands) < 2 or bands["accuracy"].max() == bands["accuracy"].min():
        return "none (all bands equal)" if len(bands) > 1 else "– (one band tested)"
    low, high = row.worst_depth_min * 100, row.worst_depth_max * 100
    where = f"{low:.4g}%" if low == high else f"{low:.4g}–{high:.4g}%"
    return f"{row.worst_band} {where}: {ci_cell(row.worst_accuracy, row.worst_ci_low, row.worst_ci_high)}"


def _effective_note(row) -> str:
    if row.beyond_tested:
        return "every tested length passed; test longer contexts to find the limit"
    below = pct_below(row.first_failing_accuracy, row.threshold)
    return f"{below} at {tokens(row.first_failing_length)}, below the threshold"

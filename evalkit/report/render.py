"""Write a report folder: tables (CSV, Parquet), charts (PNG, SVG), ``report.md`` and ``report.html``."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evalkit.report.document.agreement_section import agreement_blocks
from evalkit.report.document.attention_sections import attention_report
from evalkit.report.charts.accuracy import new_figure, plot_accuracy_vs_depth, plot_heatmap, save_figure
from evalkit.report.analysis.compare import comparison_table, control_rates, length_comparison
from evalkit.report.charts.compare import plot_accuracy_difference, plot_variants_by_length, plot_variants_vs_depth
from evalkit.report.document.blocks import Heading, Link, Para, to_markdown_doc
from evalkit.report.document.findings import finding_text
from evalkit.report.document.html import render_html
from evalkit.report.analysis.indices import (
    DEFAULT_THRESHOLD,
    band_table,
    check_threshold,
    effective_context_length,
    position_indices,
)
from evalkit.report.data.labels import add_variants, placement_trials, variant_order
from evalkit.report.data.lengths import length_axis
from evalkit.report.data.load import load_header, load_results
from evalkit.report.data.untrained import trained_records, untrained_models
from evalkit.report.document.mitigation_section import mitigation_report
from evalkit.report.document.recommend_section import recommendation_blocks
from evalkit.report.analysis.mitigations import baseline_records
from evalkit.report.document.results import controls_blocks, examples_blocks, glossary_blocks, variant_blocks
from evalkit.report.document.sections import ReportData, comparison_blocks, positions_blocks, runs_blocks, trust_warnings
from evalkit.report.analysis.decision import ModelDecision, model_decisions
from evalkit.report.charts.safety_strip import legend_handles, plot_safety_strip, strip_size
from evalkit.report.document.decision_section import decision_blocks, untrained_blocks, variant_summary_blocks
from evalkit.report.document.viewer import write_viewer
from evalkit.report.document.content_section import content_report
from evalkit.report.document.failure_section import failure_report
from evalkit.report.analysis.document_positions import document_position_table, position_pairs
from evalkit.report.charts.documents import plot_accuracy_vs_document_position, plot_document_heatmap
from evalkit.report.data.documents import task_metric
from evalkit.report.document.documents_section import documents_blocks
from evalkit.report.analysis.tables import summary_table, to_markdown
from evalkit.errors import RunDirError
from evalkit.store.format import REPORT_ADVICE, disk_errors

__all__ = ["ReportPaths", "chart_stems", "finding_text", "slug", "write_report"]

TITLE = "evalkit report: where in the prompt is the fact still found?"
_FACETS_PER_ROW = 4


@dataclass(frozen=True)
class ReportPaths:
    """Files written by ``write_report`` (all inside ``out_dir``)."""

    out_dir: Path
    report_md: Path
    summary_md: Path
    summary_csv: Path
    charts: tuple[Path, ...]  # heatmap_*, accuracy_vs_depth_*, compare_*, difference_* (.png and .svg)
    report_html: Path | None = None  # self-contained: charts embedded, no external URL
    tables: tuple[Path, ...] = ()  # every table file: summary.csv, position_indices.csv, ... (+ .parquet)
    viewer_html: Path | None = None  # the trial viewer (``evalkit view``), linked from the decision block

    @property
    def files(self) -> tuple[Path, ...]:
        """Every written file."""
        html = tuple(p for p in (self.report_html, self.viewer_html) if p is not None)
        extra = tuple(p for p in self.tables if p != self.summary_csv)
        return (self.report_md, *html, self.summary_md, self.summary_csv, *extra, *self.charts)


def write_report(
    run_dirs: Sequence[str | Path] | str | Path, out_dir: str | Path, *, threshold: float = DEFAULT_THRESHOLD
) -> ReportPaths:
    """Read ``run_dirs`` and write the report into ``out_dir`` (created if needed).

    Tables: ``summary.csv``/``summary.md`` (``summary_table`` per variant), ``position_indices.csv``,
    ``depth_bands.csv``, ``effective_length.csv`` and, when present, ``comparison.csv``,
    ``length_comparison.csv``, ``controls.csv``; each also as ``.parquet`` when pyarrow is installed.
    Charts (PNG + SVG, names slugged so nothing lands outside ``out_dir``): per variant x task
    ``heatmap_*`` and ``accuracy_vs_depth_*``; with several variants per task ``compare_by_length_*``,
    ``compare_by_depth_*`` and ``difference_*``. When the runs captured attention: ``attention_*.csv`` tables and
    per model x task ``attention_needle_mass_*``, ``attention_layers_*``, ``attention_bins_*``,
    ``attention_heads_*`` charts (see ``attention_sections.py``); per model one ``safety_*`` strip for the
    decision block (``decision.py``). Then ``report.md`` and ``report.html`` (decision block first) and
    ``viewer.html``, the trial viewer (``viewer.py``).
    ``threshold`` (fraction, default 0.856) sets the effective context length.
    """
    threshold = check_threshold(threshold)
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(d) for d in run_dirs]
    records = load_results(dirs)
    # mitigation arms (config ``mitigations``) are compared in their own section; the rest shows the baseline
    data = _compute(dirs, [load_header(d) for d in dirs], baseline_records(records), threshold)
    records = trained_records(records, data.untrained)  # an untrained control's arms measure no retrieval either
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: is a file, not a folder for the report; choose another --out")
    with disk_errors(out, "write the report", REPORT_ADVICE):  # read-only place, full disk: one line
        return _write_all(data, dirs, out, records)


def _write_all(data: ReportData, dirs: list[Path], out: Path, records: pd.DataFrame) -> ReportPaths:
    """Write every table, chart and the two documents of ``data`` (and the arms of ``records``) into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    tables = _write_tables(data, out)
    summary_md = _inside(out, "summary.md")
    summary_md.write_text("# Summary: accuracy by variant, task, context length and depth\n\n"
                          + to_markdown(data.summary), encoding="utf-8")
    variant_charts = _write_variant_charts(data, out)
    compare_charts = _write_comparison_charts(data, out)
    # attention charts and tables, only when the runs captured attention (attention_sections.py)
    # untrained controls too: their attention by position is the architecture's prior, shown beside the trained
    attention = attention_report(data.all_records, out, _inside, unique_stems, data.untrained)
    tables += attention.tables
    arms = mitigation_report(records, out, _inside, unique_stems)  # "Does a fix help?", when arms ran
    tables += arms.tables
    failures = failure_report(data.df, out, _inside, unique_stems)  # "Why facts are missed", when records say why
    content = content_report(data.df, out, _inside, unique_stems)  # content axes and similarity, when varied
    tables += failures.tables + content.tables

    decisions = model_decisions(data.df, data.controls, data.threshold)
    strips = _write_strip_charts(decisions, out)
    viewer = write_viewer(dirs, _inside(out, "viewer.html"))
    body = [*variant_summary_blocks(data), *runs_blocks(data), *agreement_blocks(data), *recommendation_blocks(data),
            *comparison_blocks(data, compare_charts), *positions_blocks(data), *documents_blocks(data, variant_charts),
            *failures.blocks, *content.blocks, *arms.blocks,
            *controls_blocks(data), *variant_blocks(data, variant_charts), *attention.blocks,
            *examples_blocks(data), *glossary_blocks(data, [p for p in tables if p.suffix == ".csv"])]
    reasons = {m: [*failures.lines.get(m, []), *content.lines.get(m, [])] for m in {*failures.lines, *content.lines}}
    summary = [*decision_blocks(data, decisions, strips, reasons), *untrained_blocks(data, bool(attention.blocks)),
               *trust_warnings(data)]
    links = Para(("Tables: ", Link("summary.md", "summary.md"), " · ", Link("summary.csv", "summary.csv"),
                  ". A self-contained version of this report is ", Link("report.html", "report.html"), "."))
    report_md = _inside(out, "report.md")
    report_md.write_text(to_markdown_doc([Heading(1, TITLE), *summary, links, *body]), encoding="utf-8")
    report_html = _inside(out, "report.html")
    report_html.write_text(render_html(TITLE, summary, body, footer=f"Written by evalkit from {len(dirs)} run "
                                       "directories." if len(dirs) > 1 else "Written by evalkit."), encoding="utf-8")
    charts = tuple(p for paths in [*strips.values(), *variant_charts.values(), *compare_charts.values(),
                                   attention.charts, arms.charts, failures.charts, content.charts] for p in paths)
    return ReportPaths(out, report_md, summary_md, tables[0], charts, report_html, tuple(tables), viewer)


def _compute(dirs: list[Path], headers: list[dict], records: pd.DataFrame, threshold: float) -> ReportData:
    """Every table of the report, from the records of ``dirs`` (an untrained control's only in ``all_records``)."""
    every = add_variants(records)
    untrained = untrained_models(headers)
    df = trained_records(every, untrained)
    main = placement_trials(df)
    model_of = dict(zip(df["variant"].astype("str"), df["model"]))
    summary = summary_table(main, by="variant")
    summary.insert(1, "model", summary["variant"].map(model_of))
    variants = variant_order(df)
    compares = main["variant"].nunique() > 1
    return ReportData(
        dirs=tuple(dirs), headers=tuple(headers), df=df, summary=summary, bands=band_table(main),
        indices=position_indices(main), effective=effective_context_length(main, threshold),
        lengths=length_comparison(main) if compares else pd.DataFrame(columns=["variant", "task"]),
        cells=comparison_table(main) if compares else pd.DataFrame(columns=["variant", "task"]),
        controls=control_rates(df), threshold=threshold, variants=tuple(variants),
        tasks=tuple(sorted(map(str, main["task"].unique()))),
        positions=document_position_table(df), position_pairs=position_pairs(df),
        untrained=untrained, all_records=every,
    )


# ---------------------------------------------------------------------------- file names


def slug(name: str) -> str:
    """A file-name-safe form of a model or task name: ``"org/Model-1.7B" -> "org-Model-1.7B"``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    text = re.sub(r"\.{2,}", ".", text).strip("-._")
    return text or "x"


def unique_stems(keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """``key -> "<slug>_<slug>..."``, made unique with a short hash when two keys slug alike."""
    stems: dict[tuple[str, ...], str] = {}
    used: set[str] = set()
    for key in keys:
        stem = "_".join(slug(part) for part in key)
        if stem in used:
            stem = f"{stem}-{hashlib.sha1(chr(0).join(key).encode()).hexdigest()[:8]}"
        used.add(stem)
        stems[key] = stem
    return stems


def chart_stems(summary: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``(variant or model, task) -> "<name>_<task>"`` slugs, made unique with a short hash on collision."""
    column = "variant" if "variant" in summary.columns else "model"
    return unique_stems(sorted({(str(m), str(t)) for m, t in zip(summary[column], summary["task"])}))


def _inside(out_dir: Path, name: str) -> Path:
    """``out_dir / name``, refusing any name that would resolve elsewhere."""
    path = out_dir / name
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"report file name {name!r} would leave {out_dir}")
    return path


# ---------------------------------------------------------------------------- tables


def parquet_available() -> bool:
    """Whether ``DataFrame.to_parquet`` can work here (pyarrow importable; it is not a dependency)."""
    return importlib.util.find_spec("pyarrow") is not None


def _write_tables(data: ReportData, out: Path) -> list[Path]:
    """Each table as CSV, and as Parquet when pyarrow can be imported (it is not a dependency)."""
    named = [("summary", data.summary), ("position_indices", data.indices), ("depth_bands", data.bands),
             ("effective_length", data.effective)]
    if data.compares:
        named += [("length_comparison", data.lengths), ("comparison", data.cells)]
    if not data.controls.empty:
        named.append(("controls", data.controls))
    if not data.positions.empty:
        named += [("document_positions", data.positions), ("document_position_pairs", data.position_pairs)]
    parquet = parquet_available()
    written = []
    for name, table in named:
        path = _inside(out, f"{name}.csv")
        table.to_csv(path, index=False)
        written.append(path)
        if parquet:
            path = _inside(out, f"{name}.parquet")
            table.assign(**{c: table[c].astype("str") for c in table.columns if table[c].dtype == "category"}) \
                .to_parquet(path, index=False)
            written.append(path)
    return written


# ---------------------------------------------------------------------------- charts


def _write_variant_charts(data: ReportData, out: Path) -> dict[tuple[str, str], list[Path]]:
    """Heatmap and depth curves per variant x task that has a completed trial."""
    main = placement_trials(data.df)
    done = data.summary[data.summary["n"] > 0]
    charts: dict[tuple[str, str], list[Path]] = {}
    for (variant, task), stem in chart_stems(done).items():
        if task in data.document_tasks:
            charts[(variant, task)] = _document_charts(data, out, variant, task, stem)
            continue
        sub = main[(main["variant"].astype("str") == variant) & (main["task"] == task)]
        n_depths, n_lengths = sub["depth"].nunique(), sub["context_length"].nunique()
        fig = new_figure(max(6.0, 2.8 + 1.0 * n_lengths), max(4.0, 1.8 + 0.42 * n_depths))
        plot_heatmap(main, fig.add_subplot(), variant, task, by="variant")
        written = save_figure(fig, _inside(out, f"heatmap_{stem}"))
        fig = new_figure(8.5, 4.6)
        plot_accuracy_vs_depth(main, fig.add_subplot(), variant, task, by="variant")
        charts[(variant, task)] = written + save_figure(fig, _inside(out, f"accuracy_vs_depth_{stem}"))
    return charts


def _document_charts(data: ReportData, out: Path, variant: str, task: str, stem: str) -> list[Path]:
    """A documents task's heatmap and accuracy curve on the gold document position axis."""
    cells = data.positions[(data.positions["variant"] == variant) & (data.positions["task"] == task)]
    metric = task_metric(data.df, task)
    fig = new_figure(max(6.0, 2.8 + 1.0 * cells["context_length"].nunique()),
                     max(4.0, 1.8 + 0.42 * cells["gold_document_index"].nunique()))
    plot_document_heatmap(data.positions, fig.add_subplot(), variant, task, metric)
    written = save_figure(fig, _inside(out, f"heatmap_{stem}"))
    controls = data.controls[(data.controls["variant"].astype("str") == variant) & (data.controls["task"] == task)] \
        if not data.controls.empty else None
    fig = new_figure(8.5, 4.6)
    plot_accuracy_vs_document_position(data.positions, fig.add_subplot(), variant, task, metric, controls)
    return written + save_figure(fig, _inside(out, f"accuracy_vs_position_{stem}"))


def _write_strip_charts(decisions: tuple[ModelDecision, ...], out: Path) -> dict[str, list[Path]]:
    """One "where is it safe" strip per model (``safety_<variant>``), for the decision block."""
    charts: dict[str, list[Path]] = {}
    stems = unique_stems([(d.variant,) for d in decisions])
    for decision in decisions:
        fig = new_figure(*strip_size(decision))
        plot_safety_strip(decision, fig.add_subplot())
        fig.legend(handles=legend_handles(), loc="outside lower center", ncol=3, frameon=False, fontsize=8)
        charts[decision.variant] = save_figure(fig, _inside(out, f"safety_{stems[(decision.variant,)]}"))
    return charts


def _write_comparison_charts(data: ReportData, out: Path) -> dict[str, list[Path]]:
    """Per task with several variants: accuracy by length, faceted depth curves, difference heatmaps."""
    main = placement_trials(data.df)
    main = main[(main["status"] == "ok").to_numpy()]
    charts: dict[str, list[Path]] = {}
    if not data.compares:
        return charts
    task_stems = unique_stems([(t,) for t in data.tasks])
    for task in data.tasks:
        sub = main[main["task"] == task]
        if sub["variant"].nunique() < 2:
            continue
        stem = task_stems[(task,)]
        fig = new_figure(8.5, 4.6 + 0.25 * sub["variant"].nunique())
        plot_variants_by_length(main, fig.add_subplot(), task, data.threshold)
        written = save_figure(fig, _inside(out, f"compare_by_length_{stem}"))
        written += save_figure(_facet_figure(main, task), _inside(out, f"compare_by_depth_{stem}"))
        others = [v for v in data.variants[1:] if v in set(data.cells.loc[data.cells["task"] == task, "variant"])]
        for (variant,), vstem in unique_stems([(v,) for v in others]).items():
            n_depths, n_lengths = sub["depth"].nunique(), sub["context_length"].nunique()
            fig = new_figure(max(6.5, 3.0 + 1.0 * n_lengths), max(4.0, 1.9 + 0.42 * n_depths))
            plot_accuracy_difference(main, fig.add_subplot(), variant, data.variants[0], task)
            written += save_figure(fig, _inside(out, f"difference_{vstem}_{stem}"))
        charts[task] = written
    return charts


def _facet_figure(main: pd.DataFrame, task: str):
    """One accuracy-vs-depth panel per context length (shared y; per window fraction where the records are
    fractions, ``report/data/lengths.py``), one legend below."""
    axis = length_axis(main[main["task"] == task])
    lengths = sorted(main.loc[main["task"] == task, axis].unique().tolist())
    cols = min(len(lengths), _FACETS_PER_ROW)
    rows = -(-len(lengths) // cols)
    variants = main.loc[main["task"] == task, "variant"].nunique()
    fig = new_figure(max(6.0, 3.3 * cols), 3.4 * rows + 0.9 + 0.25 * variants)
    axes = fig.subplots(rows, cols, sharey=True, squeeze=False).ravel()
    for i, (ax, length) in enumerate(zip(axes, lengths)):
        plot_variants_vs_depth(main, ax, length, task, legend=False)
        if i % cols:
            ax.set_ylabel("")
    for ax in axes[len(lengths):]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=1 if variants > 3 else 2, frameon=False)
    fig.suptitle(f"Accuracy by needle depth at each context length (shaded: 95% CI) · {task}", fontsize=11)
    return fig

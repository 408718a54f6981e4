"""Report sections close to the trials: results per variant, control rates, example trials, glossary."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.report.document.blocks import Block, Bullets, Details, Heading, Image, Link, Para, Strong, Table
from evalkit.report.document.findings import finding_text, pct
from evalkit.report.analysis.indices import BANDS, completed_trials
from evalkit.report.data.labels import control_labels
from evalkit.report.data.lengths import FRACTION, length_cell
from evalkit.report.analysis.clusters import cluster_labels, cluster_wilson_interval
from evalkit.report.analysis.stats import wilson_interval
from evalkit.report.analysis.truncation import truncated_count
from evalkit.report.data.documents import accuracy_label, position_text, sentence_case, task_metric
from evalkit.report.document.documents_section import document_finding
from evalkit.report.document.sections import CONTROL_MEANING, ReportData, ci_cell, series_label

EXAMPLE_ROWS = 8  # example trials shown in the report
_TEXT_LIMIT = 160  # characters of needle / output shown per cell


def variant_blocks(data: ReportData, charts: dict[tuple[str, str], list[Path]]) -> list[Block]:
    """Per variant x task: finding, heatmap, accuracy-vs-depth curves, skip reasons, the cell table."""
    blocks: list[Block] = [Heading(2, "Results per variant", "results")]
    for variant in data.variants:
        for task in data.tasks:
            rows = data.summary[(data.summary["variant"] == variant) & (data.summary["task"] == task)]
            if rows.empty:
                continue
            label = series_label(data, variant, task) if len(data.tasks) > 1 else f"{variant} · {task}"
            documents = task in data.document_tasks
            trials = data.df[(data.df["variant"].astype("str") == variant) & (data.df["task"] == task)]
            pooled = pooled_interval(trials, int(rows["n"].sum()), int(rows["correct"].sum()))
            blocks += [Heading(3, label), Para(document_overall(data, variant, task) if documents
                                               else finding_text(rows, pooled))]
            skipped = trials[(trials["status"] != "ok") & (control_labels(trials) == "").to_numpy()]
            if not skipped.empty:
                reasons = skipped["skip_reason"].replace("", "no reason given").value_counts()
                blocks.append(Para("Skip reasons: " + "; ".join(f"{r} ({c})" for r, c in reasons.items()) + "."))
            truncated = truncated_count(trials)
            if truncated:
                blocks.append(Para(f"{truncated} of {len(trials)} trials were scored wrong after they ran out of "
                                   "max_new_tokens before the scored answer ended (`truncated: true` in their records, "
                                   "and for a metric that reads the first line, no newline): they may be wrong only "
                                   "because they were cut; raise max_new_tokens.", kind="note"))
            for png in [p for p in charts.get((variant, task), []) if p.suffix == ".png"]:
                axis = "gold document position" if documents else "needle depth"
                kind = f"Accuracy heatmap by {axis}" if png.name.startswith("heatmap_") else f"Accuracy vs {axis}"
                blocks.append(Image(png, f"{kind}: {variant} · {task}"))
            table = document_cell_table(data, variant, task) if documents else cell_table(rows)
            blocks.append(Details(f"Table: every cell of {label}", (table,)))
    return blocks


def pooled_interval(trials: pd.DataFrame, n: int, correct: int) -> tuple[float, float]:
    """The interval of ``correct`` / ``n`` pooled over ``trials``' cells, counting samples (``clusters.py``).

    Plain Wilson when the completed placement trials are not exactly those counts (nothing to cluster on).
    """
    done = completed_trials(trials)
    if len(done) != n or int(done["_correct"].sum()) != correct:
        return wilson_interval(correct, n)
    return cluster_wilson_interval(done["_correct"], cluster_labels(done))


def cell_table(rows: pd.DataFrame) -> Table:
    """Rows of ``summary_table`` for one variant x task as a table block (with the window fraction, where the
    lengths are fractions of the model's window)."""
    length = "context length (% of window)" if FRACTION in rows.columns else "context length (tokens)"
    return Table(
        (length, "depth", "accuracy [95% CI] (n)", "exact match", "gold log-prob / token",
         "achieved depth", "skipped"),
        tuple((length_cell(getattr(r, FRACTION, None), r.context_length), f"{r.depth * 100:.4g}%",
               ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n),
               pct(r.exact_match_rate), "–" if pd.isna(r.gold_logprob_mean) else f"{r.gold_logprob_mean:.3f}",
               "–" if pd.isna(r.achieved_depth_mean) else f"{r.achieved_depth_mean * 100:.1f}%", str(r.skipped))
              for r in rows.itertuples(index=False)),
        (True,) * 7,
    )


def document_overall(data: ReportData, variant: str, task: str) -> str:
    """A documents task's paragraph: pooled accuracy (its metric named) and the position finding."""
    cells = data.positions[(data.positions["variant"] == variant) & (data.positions["task"] == task)]
    n, correct = int(cells["n"].sum()), int(cells["correct"].sum())
    if n == 0:
        return "No completed trials."
    label = accuracy_label(task_metric(data.df, task))
    trials = data.df[(data.df["variant"].astype("str") == variant) & (data.df["task"] == task)]
    low, high = pooled_interval(trials, n, correct)  # a question is asked at every gold position: count questions
    return (f"Over {n} trials at {cells['gold_document_index'].nunique()} gold document positions, {label} was "
            f"{pct(correct / n)} (95% CI {low * 100:.0f}–{high * 100:.0f}%). {document_finding(data, variant, task)}")


def document_cell_table(data: ReportData, variant: str, task: str) -> Table:
    """Rows of ``document_position_table`` for one variant x task: one per context length and gold position."""
    cells = data.positions[(data.positions["variant"] == variant) & (data.positions["task"] == task)]
    label = accuracy_label(task_metric(data.df, task))
    return Table(("context length (tokens)", "gold document position", f"{label} [95% CI] (n)"),
                 tuple((f"{r.context_length:,}", position_text(r.gold_document_index, r.documents_total),
                        ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n)) for r in cells.itertuples(index=False)),
                 (True, True, True))


def controls_blocks(data: ReportData) -> list[Block]:
    """Closed-book and oracle rates (only when the records hold control trials)."""
    if data.controls.empty:
        return []
    rows = tuple((series_label(data, r.variant, r.task), r.control, ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n),
                  str(r.skipped)) for r in data.controls.itertuples(index=False))
    return [
        Heading(2, "Controls", "controls"),
        Para("Control trials place no needle at a depth and are kept out of every other table. "
             + " ".join(f"{name}: correct {meaning}." for name, meaning in CONTROL_MEANING.items())
             + " Accuracy near the closed-book rate means the context did not help; the oracle rate is the best "
               "a placement trial can hope for."),
        Table(("variant", "control", "accuracy [95% CI] (n)", "skipped"), rows, (False, False, True, True),
              caption=sentence_case(_metric_note(data).removeprefix("; "))),
    ]


def example_trials(df: pd.DataFrame, limit: int = EXAMPLE_ROWS) -> pd.DataFrame:
    """Up to ``limit`` completed placement trials to read, wrong answers first, spread over variants.

    At most one trial per cell; within a variant the longest contexts and the depths nearest the
    middle come first: where retrieval usually fails.
    """
    frame = df[(df["status"] == "ok").to_numpy() & (control_labels(df) == "").to_numpy()]
    if frame.empty:
        return frame
    frame = frame.assign(_wrong=~frame["correct"].fillna(False).astype(bool),
                         _mid=(frame["depth"] - 0.5).abs(), variant=frame["variant"].astype("str"))
    frame = frame.sort_values(["_wrong", "context_length", "_mid", "trial_id"], ascending=[False, False, True, True])
    frame = frame.drop_duplicates(["variant", "task", "context_length", "depth", "_wrong"])  # one per cell
    per_variant = max(1, -(-limit // max(frame["variant"].nunique(), 1)))
    picked = frame.groupby("variant", sort=False).head(per_variant)
    return picked.sort_values(["_wrong", "variant", "context_length", "depth"],
                              ascending=[False, True, True, True]).head(limit)


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def _where(data: ReportData, row) -> str:
    """A trial's place: ``"50%"`` (depth) or, for a documents task, ``"document 3 of 10"``."""
    if row.task in data.document_tasks and not pd.isna(row.gold_document_index):
        return f"document {position_text(row.gold_document_index, row.documents_total)}"
    return f"{row.depth * 100:.4g}%"


def examples_blocks(data: ReportData) -> list[Block]:
    """A few trials with needle, depth and generated text (wrong answers first)."""
    picked = example_trials(data.df)
    if picked.empty:
        return []
    wrong = int(picked["_wrong"].sum())
    intro = ("Wrong answers first, one per cell, from the longest contexts and the depths nearest the middle; "
             f"text is shown as recorded (shortened to {_TEXT_LIMIT} characters)."
             if wrong else "No trial was answered wrongly; a few trials:")
    rows = tuple((r.variant, f"{r.context_length:,}", _where(data, r), _clip(r.needle), _clip(r.gold_answer),
                  _clip(r.generated), "yes" if r.correct else "no") for r in picked.itertuples(index=False))
    where = "depth / gold document" if data.document_tasks else "depth"
    return [Heading(2, "Example trials", "examples"), Para(intro),
            Table(("variant", "context length", where, "needle", "gold answer", "generated", "correct"), rows,
                  (False, True, True, False, False, False, False), wrap=True)]


def _metric_note(data: ReportData) -> str:
    """``"; other metrics, named wherever they are the accuracy: docs_qa: accuracy (Liu et al.'s best-subspan EM)"``."""
    named = [(task, task_metric(data.df, task)) for task in data.tasks]
    named = [f"{task}: {accuracy_label(metric)}" for task, metric in named if metric != "contains"]
    return "; other metrics, named wherever they are the accuracy: " + ", ".join(named) if named else ""


def glossary_blocks(data: ReportData, tables: list[Path]) -> list[Block]:
    """Definitions and links to the table files."""
    links: list = []
    for i, path in enumerate(tables):
        links += ([" · "] if i else []) + [Link(path.name, path.name)]
    return [
        Heading(2, "How to read this", "glossary"),
        Bullets((
            (Strong("accuracy"), ": share of completed trials whose output contains the gold answer (normalised)"
             + _metric_note(data) + "."),
            (Strong("95% CI"), ": per cell (one depth, one length), the Wilson score interval of that share; for "
             "differences, Newcombe's interval built from the two Wilson intervals. Rates pooled over depths, lengths "
             "or tasks (bands, lengths, layouts, controls, overall rates) share each sample's needle across its "
             "cells, so their interval counts samples, not trials: Wilson on the effective count (trials divided by "
             "the design effect of the clustering by sample); differences pooled that way use a bootstrap over "
             "samples. Wide intervals mean too few samples."),
            (Strong("depth"), ": share of the haystack's tokens placed before the needle (0% = start of the context, "
             "100% = right before the question); achieved depth is where the needle landed after snapping to a "
             "sentence boundary."),
            (Strong("context length"), ": total prompt tokens the model saw, chat template and question included."),
            *(((Strong("gold document position"), ": documents tasks (" + ", ".join(sorted(data.document_tasks))
                + "): where the gold document sits among the K documents, 1 = first; it replaces depth on their "
                "charts and tables"),) if data.document_tasks else ()),
            (Strong("depth bands"), ": " + ", ".join(b.label for b in BANDS) + " of depth."),
            (Strong("accuracy over all depths"), ": every trial at that length counts once (with the same number "
             "of trials per depth, the average over depths)."),
            (Strong("effective context length"), f": longest tested length whose accuracy over all depths stays at "
             f"or above {data.threshold * 100:.4g}% there and at every shorter tested length."),
        )),
        Para(("Tables: ", *links) if links else "No tables were written."),
    ]

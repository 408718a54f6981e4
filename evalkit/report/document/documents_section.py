"""The report's section on documents tasks: accuracy by gold document position with closed-book and oracle rates
(Liu et al.'s table), the paired comparisons between positions and a one-sentence finding per variant."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.report.analysis.document_positions import (
    ALPHA,
    FLAT,
    MIDDLE_BEST,
    PRIMACY,
    RECENCY,
    U_CURVE,
    curve_shape,
)
from evalkit.report.data.documents import (
    accuracy_label,
    metric_name,
    metric_note,
    position_axis_label,
    position_text,
    sentence_case,
    task_metric,
)
from evalkit.report.analysis.shape import FLAT_LIMIT, flat_bound
from evalkit.report.analysis.stats import difference_interval
from evalkit.report.document.blocks import Block, Code, Heading, Image, Para, Strong, Table
from evalkit.report.document.findings import count, points, points_ci, tokens, within_points
from evalkit.report.document.sections import ReportData, ci_cell

_CONTROLS = (("closed_book", "closed book"), ("oracle", "oracle"))
_DECISION_SHAPES = {U_CURVE: "U-shaped", PRIMACY: "primacy", RECENCY: "recency",
                    MIDDLE_BEST: "the middle is best"}
_COMPARISONS = {"first_vs_middle": "first vs middle", "last_vs_middle": "last vs middle",
                "best_vs_worst": "best vs worst"}
_SHAPES = {
    U_CURVE: "U-curve (lost in the middle)", PRIMACY: "primacy only", RECENCY: "recency only",
    MIDDLE_BEST: "the middle beats an end", FLAT: "flat",
}


def _difference(row) -> str:
    """``"+40 pts [+15, +65]"``, or ``"+100 pts (n too small)"`` where one pair leaves the interval undefined."""
    if pd.isna(row.diff_low) or pd.isna(row.diff_high):
        return f"{points(row.difference)} (n too small)"
    return points_ci(row.difference, row.diff_low, row.diff_high)


def _pair_text(row, total: int) -> str:
    """``"first (1 of 10) − middle (6 of 10): +40 pts [+15, +65], McNemar p = 0.004 (20 pairs)"``."""
    a, b = row.comparison.split("_vs_")
    return (f"{a} ({position_text(row.position_a, total)}) − {b} ({position_text(row.position_b, total)}): "
            f"{_difference(row)}, McNemar p = {row.p_value:.2g} "
            f"({count(row.pairs, 'pair', 'pairs')})")


def shape_sentence(cells: pd.DataFrame, pairs: pd.DataFrame, metric: str) -> str:
    """One series' finding: U-curve, primacy only, recency only or flat, from the paired tests at 95%."""
    shape = curve_shape(pairs)
    total = int(cells["documents_total"].max())
    label = accuracy_label(metric)
    if shape == "undecided":
        return (f"Fewer than three gold positions were tested, so no curve shape can be read; {label} by position "
                "is in the table.")
    by = {r.comparison: r for r in pairs.itertuples(index=False)}
    middle, bound = _middle_reading(by, total)
    if shape == FLAT:
        text = (f"Flat within {within_points(bound)} at 95% ({middle})." if bound is not None else
                f"Not decided: neither end differs from the middle at 95% ({middle}); the gap may be sampling noise.")
    else:
        text = f"{_SHAPES[shape].capitalize()}: paired by question, {middle}."
    if "best_vs_worst" in by and shape != U_CURVE:
        row = by["best_vs_worst"]
        sure = row.p_value < ALPHA
        text += (f" Best vs worst position: {_pair_text(row, total)}"
                 + ("." if sure else "; the gap may be sampling noise."))
    return text


def _middle_reading(by: dict, total: int) -> tuple[str, float | None]:
    """The two middle comparisons in words, and their flat bound (``shape.flat_bound``; None past the limit).

    The bound reads Newcombe's interval of the two positions' accuracies, not the paired bootstrap: with no
    discordant pair the bootstrap collapses to [0, 0], which would call 12 questions "flat within ±0 points"."""
    rows = [by["first_vs_middle"], by["last_vs_middle"]]
    intervals = []
    for row in rows:
        _, low, high = difference_interval(round(row.accuracy_a * row.pairs), row.pairs,
                                           round(row.accuracy_b * row.pairs), row.pairs)
        intervals.append((float(low), float(high)))
    return "; ".join(_pair_text(row, total) for row in rows), flat_bound(*intervals)


def document_shape_items(data: ReportData, variant: str) -> list[tuple]:
    """The decision block's shape bullets of a documents variant, one per task x length with both middle pairs."""
    pairs = data.position_pairs
    mine = pairs[pairs["variant"].astype("str") == variant] if not pairs.empty else pairs
    items = []
    for (task, length), group in mine.groupby(["task", "context_length"], sort=True) if not mine.empty else ():
        by = {r.comparison: r for r in group.itertuples(index=False)}
        if "first_vs_middle" not in by or "last_vs_middle" not in by:
            continue
        middle, bound = _middle_reading(by, int(group["documents_total"].max()))
        shape = curve_shape(group)
        if shape != FLAT:
            text = f"{_DECISION_SHAPES[shape]} at 95%, paired by question ({middle})."
        elif bound is not None:
            text = f"flat within {within_points(bound)} at 95% ({middle})."
        else:
            text = (f"not decided: neither end differs from the middle at 95% and the intervals reach past "
                    f"{within_points(FLAT_LIMIT)} ({middle}); more questions would tell.")
        where = tokens(int(length)) + (f", {task}" if mine["task"].nunique() > 1 else "")
        items.append((Strong(f"Shape by gold position at {where}: "), text))
    return items


def _control_cells(controls: pd.DataFrame, variant: str, task: str) -> list[str]:
    rows = controls[(controls["variant"].astype("str") == variant) & (controls["task"] == task)] \
        if not controls.empty else controls
    out = []
    for name, _label in _CONTROLS:
        hit = rows[rows["control"] == name] if not rows.empty else rows
        out.append("not run" if hit.empty else ci_cell(hit["accuracy"].iloc[0], hit["ci_low"].iloc[0],
                                                        hit["ci_high"].iloc[0], int(hit["n"].iloc[0])))
    return out


def position_table(data: ReportData, task: str) -> Table:
    """Liu et al.'s table for one task: a row per variant (and length), a column per gold position, then the
    closed-book and oracle rates; every cell ``accuracy [95% CI] (n)``."""
    cells = data.positions[data.positions["task"] == task]
    positions = sorted(int(p) for p in cells["gold_document_index"].unique())
    total = int(cells["documents_total"].max())
    lengths = cells["context_length"].nunique() > 1
    rows = []
    for (variant, length), series in cells.groupby(["variant", "context_length"], sort=False):
        by = series.set_index("gold_document_index")
        row = [str(variant)] + ([f"{int(length):,}"] if lengths else [])
        row += [ci_cell(by.loc[p, "accuracy"], by.loc[p, "ci_low"], by.loc[p, "ci_high"], int(by.loc[p, "n"]))
                if p in by.index else "–" for p in positions]
        rows.append(tuple(row + _control_cells(data.controls, str(variant), task)))
    headers = ("variant", *(("context length",) if lengths else ()), *(f"position {p + 1}" for p in positions),
               "closed book", "oracle")
    metric = task_metric(data.df, task)
    return Table(headers, tuple(rows), (False, *((True,) if lengths else ()), *(True,) * (len(positions) + 2)),
                 caption=f"{task}: {accuracy_label(metric)} [95% CI] (n) by {position_axis_label(total)}; "
                         "closed book: no documents; oracle: the gold document alone")


def _pairs_table(pairs: pd.DataFrame, total: int) -> Table:
    return Table(("comparison", "positions", "pairs", "accuracy a / b", "a − b [95% CI]", "a only / b only",
                  "McNemar p"),
                 tuple((_COMPARISONS.get(r.comparison, r.comparison),
                        f"{position_text(r.position_a, total)} vs {position_text(r.position_b, total)}", str(r.pairs),
                        f"{r.accuracy_a * 100:.0f}% / {r.accuracy_b * 100:.0f}%",
                        _difference(r), f"{r.a_only} / {r.b_only}",
                        f"{r.p_value:.2g}") for r in pairs.itertuples(index=False)),
                 (False, False, True, True, True, True, True),
                 caption="Paired by question (same sample at both positions): paired bootstrap 95% interval, "
                         "McNemar's exact test; best vs worst is picked on these trials, so its p is optimistic")


def document_finding(data: ReportData, variant: str, task: str) -> str:
    """The shape sentence of one variant x task (its first context length), or "" when it has no documents."""
    cells = data.positions[(data.positions["variant"] == variant) & (data.positions["task"] == task)]
    if cells.empty:
        return ""
    length = cells["context_length"].min()
    cells = cells[cells["context_length"] == length]
    pairs = data.position_pairs[(data.position_pairs["variant"] == variant) & (data.position_pairs["task"] == task)
                                & (data.position_pairs["context_length"] == length)]
    return shape_sentence(cells, pairs, task_metric(data.df, task))


def _metric_para(metric: str) -> Para:
    """The note naming the task's primary metric (its ``metric:`` value) and saying what it is."""
    note = metric_note(metric)
    return Para((f"Primary metric: {metric_name(metric)} (", Code(f"metric: {metric}"), "; the records' ",
                 Code("correct"), " is this metric, and so is every accuracy of this task)",
                 f": {note}." if note else "."), kind="note")


def _self_answering_paras(records: pd.DataFrame) -> list[Block]:
    """The note on questions that contain their own answer: how many were left out, or how many asked were such."""
    if "extra" not in records.columns:
        return []
    extras = records["extra"].map(lambda e: e if isinstance(e, dict) else {})
    left_out = max((int(e.get("self_answering_left_out") or 0) for e in extras), default=0)
    asked = records.loc[extras.map(lambda e: bool(e.get("self_answering"))).astype(bool), "sample"].nunique()
    if left_out:
        return [Para((f"{left_out} questions of the source contain their own answer by this metric (an echo of the "
                      "question would score right, closed book included) and were left out of the samples (",
                      Code("documents.keep_self_answering: true"), " keeps them)."), kind="note")]
    if asked:
        return [Para((f"{asked} of the questions asked contain their own answer by this metric "
                      "(an echo of the question scores right, closed book included): kept by ",
                      Code("documents.keep_self_answering"), "."), kind="note")]
    return []


def documents_blocks(data: ReportData, charts: dict[tuple[str, str], list[Path]]) -> list[Block]:
    """The section (nothing when no task has documents)."""
    if data.positions.empty:
        return []
    blocks: list[Block] = [
        Heading(2, "Accuracy by gold document position", "document-positions"),
        Para("Documents tasks put K documents in the prompt, one of them gold; the position axis is where the gold "
             "document sits (1 = first). Every position asks the same questions, so positions are compared on "
             "paired trials (same question): McNemar's exact test and a paired bootstrap interval. The middle is the "
             "tested position nearest the centre. The shape is read from first vs middle and last vs middle at 95%: "
             "U-curve when both ends beat the middle, primacy or recency only when one does, flat when neither."),
    ]
    for task in sorted(set(map(str, data.positions["task"]))):
        cells = data.positions[data.positions["task"] == task]
        total = int(cells["documents_total"].max())
        metric = task_metric(data.df, task)
        blocks += [Heading(3, f"Task {task}"), position_table(data, task)]
        if metric != "contains":
            blocks.append(_metric_para(metric))
        blocks += _self_answering_paras(data.df[data.df["task"] == task])
        for variant in [v for v in data.variants if v in set(cells["variant"].astype("str"))]:
            pairs = data.position_pairs[(data.position_pairs["variant"] == variant)
                                        & (data.position_pairs["task"] == task)]
            blocks += [Heading(4, f"{variant} · {task}"), Para(document_finding(data, variant, task))]
            alt = f"{sentence_case(accuracy_label(metric))} by gold document position: {variant} · {task}"
            blocks += [Image(p, alt)
                       for p in charts.get((variant, task), []) if p.suffix == ".png"
                       and p.name.startswith("accuracy_vs_position")]
            if not pairs.empty:
                blocks.append(_pairs_table(pairs, total))
    return blocks

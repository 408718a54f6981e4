"""The decision block at the top of the report (one screen: a strip chart and at most ~10 bullets per model),
and the per-variant summary table that the repeated per-variant sentences became (see ``decision.py``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from evalkit.report.analysis.decision import (
    DANGER_UPPER_BOUND,
    SAFE_LOWER_BOUND,
    DepthRun,
    LayoutChoice,
    LengthVerdict,
    ModelDecision,
    UNSURE,
    OpenQuestion,
    trials_to_call_safe,
)
from evalkit.report.analysis.shape import depth_shapes
from evalkit.report.data.documents import fraction_position
from evalkit.report.data.untrained import UNTRAINED_NOTE, is_untrained
from evalkit.report.document.blocks import Block, Bullets, Code, Heading, Image, Link, Para, Strong, Table
from evalkit.report.document.findings import (
    comparison_sentence,
    count,
    depth_headline,
    effective_length_sentence,
    pct,
    points,
    shape_lines,
    tokens,
)
from evalkit.report.document.documents_section import document_finding, document_shape_items
from evalkit.report.document.sections import ReportData, ci_cell, control_sentence, series_label

_CONTROL_NAMES = {"closed_book": "closed book", "oracle": "oracle"}


def _span(run: DepthRun, total: int | None = None) -> str:
    if total is not None:  # the gold document axis: "positions 1–3 of 10"
        low, high = fraction_position(run.depth_low, total), fraction_position(run.depth_high, total)
        return f"position {low} of {total}" if low == high else f"positions {low}–{high} of {total}"
    low, high = run.depth_low * 100, run.depth_high * 100
    return f"{low:.4g}%" if low == high else f"{low:.4g}–{high:.4g}%"


def _runs_text(runs: tuple[DepthRun, ...], total: int | None = None) -> str:
    if not runs:
        return "none"
    return ", ".join(f"{_span(r, total)} ({ci_cell(r.accuracy, r.ci_low, r.ci_high)}, n={r.n})" for r in runs)


def length_line(verdict: LengthVerdict, total: int | None = None) -> tuple:
    """``"4,096 tokens: safe 0–20% (98% [93–99], n=60) · danger 30–60% (10% [4–21], n=40)"``; with ``total`` (a
    documents task's K) the cells are gold document positions: ``"safe positions 1–2 of 10 (...)"``."""
    return (Strong(f"{verdict.context_length:,} tokens: "),
            f"safe {_runs_text(verdict.safe, total)} · danger {_runs_text(verdict.danger, total)}")


def layout_line(choice: LayoutChoice) -> tuple:
    """The recommended layout with its paired gain over the runner-up and McNemar's p."""
    head = (Strong("Layout: "), "use ", Code(choice.layout), " "
            + ci_cell(choice.accuracy, choice.ci_low, choice.ci_high, choice.n))
    if choice.runner_up is None:
        return head
    gain = (f"{points(choice.gain)} [{points(choice.gain_low)[:-4]}, {points(choice.gain_high)[:-4]}]")
    return (*head, f"; {gain} over ", Code(choice.runner_up),
            f" on {choice.pairs} paired trials, McNemar p = {choice.p_value:.2g}")


def effective_line(effective: pd.DataFrame) -> tuple:
    """Effective context length per task: ``"≥ 8,192 tokens (passkey)"``."""
    parts = []
    for r in effective.itertuples(index=False):
        if pd.isna(r.effective_length):
            value = f"none ({r.threshold * 100:.4g}% not reached at {tokens(r.shortest_tested)})"
        else:
            value = ("≥ " if r.beyond_tested else "") + tokens(r.effective_length)
        parts.append(f"{r.task} {value}")
    threshold = f" (all-depth accuracy ≥ {effective['threshold'].iloc[0] * 100:.4g}%)" if not effective.empty else ""
    return (Strong(f"Effective context length{threshold}: "), "; ".join(parts) or "–")


def controls_line(controls: pd.DataFrame) -> tuple | None:
    """``"closed book 5% [1–24] (n=20); oracle 95% [76–99] (n=20)"``; None without control trials."""
    if controls.empty:
        return None
    parts = []
    for r in controls.itertuples(index=False):
        task = f" ({r.task})" if controls["task"].nunique() > 1 else ""
        parts.append(f"{_CONTROL_NAMES.get(r.control, r.control)}{task} {ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n)}")
    return (Strong("Controls: "), "; ".join(parts))


def truncation_line(truncated: int, trials: int) -> tuple:
    """The share of answers cut off by max_new_tokens: accuracy is then a lower bound."""
    return (Strong("Cut-off answers: "), f"{truncated} of {trials} trials ({truncated / trials:.0%}) were scored "
            "wrong after they ran out of max_new_tokens before the scored answer ended (no stop token; for a metric "
            "that reads the first line, before that line ended), so they may be wrong only because they were cut "
            "and accuracy here is a lower bound: raise max_new_tokens.")


def question_line(question: OpenQuestion | None, lengths: tuple[LengthVerdict, ...]) -> tuple:
    """What the data cannot tell yet, with a power estimate for the observed gap."""
    if question is None:
        unsure = [c for v in lengths for c in v.cells if c.verdict == UNSURE]
        if unsure:
            best = max(unsure, key=lambda c: (c.accuracy, -c.n))
            need = trials_to_call_safe(best.accuracy)
            more = (f"; at {pct(best.accuracy)} right, about {need:,} trials per cell (now {best.n}) would call one "
                    "safe" if need is not None else "")
            return (Strong("Not known yet: "), f"{count(len(unsure), 'depth x length cell is', 'depth x length cells are')}"
                    f" between safe and danger (too few trials){more}; {_position_gaps(lengths)}.")
        return (Strong("Not known yet: "), f"{_position_gaps(lengths)}; lengths or depths not tested are not covered.")
    gap = f"{points(question.gap)} [{points(question.low)[:-4]}, {points(question.high)[:-4]}]"
    if question.n_needed is None:
        more = "no gap was observed, so no sample size would show one"
    else:
        more = (f"about {question.n_needed:,} trials per arm (now {question.n_now:,}) would detect a gap this size "
                "with 80% power at α = 0.05")
    return (Strong("Not known yet: "), f"{question.what}: {gap}, the interval includes 0; {more}.")


def _position_gaps(lengths: tuple[LengthVerdict, ...]) -> str:
    """What the position comparison says when no gap is left open: decided, or none to decide (one accuracy at
    every depth, the floor or the ceiling); other comparisons (arms, content axes) say their own verdicts."""
    if all(len({c.accuracy for c in verdict.cells}) <= 1 for verdict in lengths):
        return "every tested depth has the same accuracy at each length, so there is no position gap to decide"
    return "each length's best-vs-worst position gap is decided at 95% (its interval excludes 0) or is 0"


def decision_blocks(data: ReportData, decisions: tuple[ModelDecision, ...],
                    strips: dict[str, list[Path]], reasons: dict[str, list[tuple]] | None = None) -> list[Block]:
    """The decision block: one intro line, then per model its strip chart and its bullets; ``reasons`` adds per
    model the lines saying why facts are missed (``failure_section.py``, ``content_section.py``)."""
    total = int((data.df["status"] == "ok").sum())
    blocks: list[Block] = [Para((
        Strong("Decision. "), f"{count(total, 'completed trial', 'completed trials')} from "
        f"{count(len(data.dirs), 'run', 'runs')}. Per tested length, a depth is safe when the lower end of its "
        f"95% interval is at least {SAFE_LOWER_BOUND:.0%} and in danger when its upper end is below "
        f"{DANGER_UPPER_BOUND:.0%}; "
        "each band's (accuracy [95% CI], n) pools its depths (tasks pooled), and since a sample keeps its needle "
        "at every depth its interval counts samples, not trials (Wilson on the design-effect count; a depth's own "
        "interval is plain Wilson). Details below; every trial can be "
        "opened in ", Link("the trial viewer", "viewer.html"), "."))]
    if not decisions:
        return blocks + [Para("No completed trials of a trained model." if data.untrained else "No completed trials.")]
    for decision in decisions:
        shown = f"{decision.variant}, the hardest condition tested" if decision.hardest else decision.variant
        blocks.append(Heading(3, decision.variant if decision.variant == decision.model
                              else f"{decision.model} (shown: {shown})"))
        blocks += [Image(p, f"Where is it safe: {decision.variant}", wide=True)
                   for p in strips.get(decision.variant, []) if p.suffix == ".png"]
        items: list = [length_line(v, decision.documents_total) for v in decision.lengths]
        if decision.documents_total is None:
            items += shape_lines(depth_shapes(data.indices, decision.variant))
        else:  # documents tasks read their shape from positions paired by question
            items += document_shape_items(data, decision.variant)
        if decision.layout is not None:
            items.append(layout_line(decision.layout))
        items.append(effective_line(decision.effective))
        controls = controls_line(decision.controls)
        if controls is not None:
            items.append(controls)
        if decision.truncation is not None:
            items.append(truncation_line(*decision.truncation))
        items += (reasons or {}).get(decision.model, [])
        items.append(question_line(decision.question, decision.lengths))
        blocks.append(Bullets(tuple(items)))
    return blocks


def untrained_blocks(data: ReportData, attention_shown: bool) -> list[Block]:
    """Per untrained control (``init: random``) one line in place of a decision: its accuracy is no retrieval
    result (``data/untrained.py``); ``attention_shown``: the report has an attention section to point to."""
    if not data.untrained or data.all_records.empty:
        return []
    records = data.all_records[is_untrained(data.all_records, data.untrained).to_numpy()]
    where = ("its attention by position is in the section Attention inside the model, beside the trained "
             "model's" if attention_shown else "this run captured no attention, so it shows nothing more; set "
             "attention: {capture: true} to see the architecture's prior")
    blocks: list[Block] = []
    for model in dict.fromkeys(str(m) for m in records.sort_values("variant")["model"]):
        done = int((records.loc[records["model"].astype("str") == model, "status"] == "ok").sum())
        blocks += [Heading(3, model), Para((
            Strong("Untrained control: "), f"{UNTRAINED_NOTE}. Its {count(done, 'completed trial', 'completed trials')}"
            f" are left out of every accuracy table, chart and finding of this report; {where}."), kind="note")]
    return blocks


def variant_summary_blocks(data: ReportData) -> list[Block]:
    """The per-variant sentences as one table (and the comparisons as a second), below the decision block."""
    rows = []
    for (variant, task), bands in data.bands.groupby(["variant", "task"], sort=False, observed=True):
        effective = data.effective[(data.effective["variant"] == variant) & (data.effective["task"] == task)]
        controls = data.controls[(data.controls["variant"] == variant) & (data.controls["task"] == task)]
        documents = task in data.document_tasks
        where = document_finding(data, str(variant), str(task)) if documents else depth_headline(bands)
        rows.append((series_label(data, str(variant), str(task)), where,
                     effective_length_sentence(effective.iloc[0]) if not effective.empty else "–",
                     control_sentence(controls) if not controls.empty else "not run"))
    if not rows:
        return []
    blocks: list[Block] = [Heading(2, "Summary per variant", "variant-summary"), Table(
        ("variant", "where facts get lost", "effective context length", "controls"), tuple(rows),
        (False, False, False, False), wrap=True)]
    comparisons = [(str(variant), comparison_sentence(group))
                   for (variant, _task), group in data.lengths.groupby(["variant", "task"], sort=False, observed=True)]
    if comparisons:
        blocks.append(Table(("variant", "against the baseline"), tuple(comparisons), (False, False), wrap=True,
                            caption=f"Baseline: {data.variants[0]}"))
    return blocks

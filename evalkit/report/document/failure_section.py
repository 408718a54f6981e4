"""The report's "Why facts are missed" section: failure types per position band (chart and table), the look-alike
answers given, and the decision block's miss line (``analysis/failure_mix.py``).

``failure_report(records, out)`` adds nothing when no trial carries a failure type, so reports of runs from
before failure types existed are unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from evalkit.report.analysis.failure_mix import (
    FAILURE_WORDS,
    MAJORITY,
    MIN_MISSES,
    MISS_TYPES,
    MissLine,
    band_label,
    failure_mix,
    failure_table,
    failure_trials,
    miss_lines,
)
from evalkit.report.charts.accuracy import new_figure, save_figure
from evalkit.report.charts.failures import plot_failure_mix
from evalkit.report.document.blocks import Block, Bullets, Heading, Image, Para, Strong, Table
from evalkit.report.document.findings import pct

_FACETS_PER_ROW = 3
EXAMPLES_SHOWN = 10  # look-alike answers listed
TEXT_LIMIT = 160


@dataclass(frozen=True)
class FailureReport:
    """What the failure section adds: blocks, chart and table files, and per model the decision block's line."""

    blocks: list[Block] = field(default_factory=list)
    charts: list[Path] = field(default_factory=list)
    tables: list[Path] = field(default_factory=list)
    misses: dict[str, MissLine] = field(default_factory=dict)

    @property
    def lines(self) -> dict[str, list[tuple]]:
        """Per model the decision block's bullets: the miss line, where the misses support one."""
        return {model: [miss_line(line)] for model, line in self.misses.items()}


def miss_line(line: MissLine) -> tuple:
    """``"Why facts are missed: misses in the middle band (30–70%) are 70% [48–85] look-alike answers (14 of 20 misses
    in 60 trials): the model finds the wrong fact, not nothing."``"""
    name, meaning = FAILURE_WORDS[line.failure]
    pooled = "; layouts pooled" if line.pooled_layouts else ""
    return (Strong("Why facts are missed: "),
            f"misses in the {band_label(line.band, 'band')} are {pct(line.share)} [{line.share_low * 100:.0f}–"
            f"{line.share_high * 100:.0f}] {name} ({line.count} of {line.misses} misses in {line.trials} "
            f"trials{pooled}): {meaning}.")


def _clip(text: object) -> str:
    text = "" if text is None or (isinstance(text, float) and pd.isna(text)) else str(text)
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + "…"


def _cell(count: int, misses: int) -> str:
    return "0" if count == 0 else f"{count} ({pct(count / misses)})"


def _table(rows: pd.DataFrame, model: str) -> Table:
    """The model's failure table: one row per variant x band, one column per failure type present."""
    types = [f for f in MISS_TYPES if f in rows.columns]
    return Table(("variant", "band", "trials", "accuracy", "misses", *(FAILURE_WORDS[f][0] for f in types)),
                 tuple((str(r["variant"]), band_label(str(r["band"])), str(r["trials"]), pct(r["accuracy"]),
                        str(r["misses"]), *(_cell(int(r[f]), int(r["misses"])) for f in types))
                       for _, r in rows.iterrows()),
                 (False, False, True, True, True, *(True,) * len(types)),
                 caption=f"{model}: failure types by position band (share of the band's misses in brackets)")


def _example_row(r) -> tuple[str, ...]:
    """One look-alike answer: where, the gold and the answer, which look-alike (or document) and its text."""
    index = None if pd.isna(r.failure_distractor) else int(r.failure_distractor)
    placed = r.distractors if isinstance(r.distractors, list) else []
    look = placed[index] if index is not None and 0 <= index < len(placed) else {}
    look = look if isinstance(look, dict) else {}
    depth = look.get("achieved_depth")
    document = not pd.isna(getattr(r, "gold_document_index", None))  # documents task: the index is a position
    number = "–" if index is None else f"document {index + 1}" if document else str(index + 1)
    return (str(r.variant), f"{int(r.context_length):,}", f"{float(r.depth) * 100:.4g}%", _clip(r.gold_answer),
            _clip(r.generated), number, _clip(look.get("text", "")),
            "–" if depth is None else f"{float(depth) * 100:.4g}%")


def look_alike_examples(df: pd.DataFrame) -> pd.DataFrame:
    """Up to ``EXAMPLES_SHOWN`` trials answered with a planted look-alike: the answer and the look-alike's text."""
    trials = failure_trials(df)
    picked = trials[(trials["failure"] == "distractor").to_numpy()].head(EXAMPLES_SHOWN)
    rows = [_example_row(r) for r in picked.itertuples(index=False)]
    return pd.DataFrame(rows, columns=["variant", "length", "depth", "gold", "answer", "look-alike", "its text",
                                       "its depth"])


def _intro() -> Para:
    words = "; ".join(f"{FAILURE_WORDS[f][0]} ({f}): {FAILURE_WORDS[f][1]}" for f in MISS_TYPES)
    return Para("Every finished trial has a failure type, read from its answer, the gold value and the values "
                f"planted in its prompt. The types: {words}. Bars show each type's share of a band's trials "
                "(correct answers pale, at the bottom; tasks pooled; a documents task's position is its gold "
                "document's). The decision block names the leading type of a model's "
                f"weakest band when that band holds at least {MIN_MISSES} misses and one type makes up more than "
                f"{MAJORITY:.0%} of them.")


def _model_charts(mix: pd.DataFrame, model: str, variants: list[str], out: Path, inside, stem: str) -> list[Path]:
    """One figure per model: a stacked bar chart per variant."""
    cols = min(len(variants), _FACETS_PER_ROW)
    rows = -(-len(variants) // cols)
    fig = new_figure(4.6 * cols + 1.8, 3.6 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, variant) in enumerate(zip(axes, variants)):
        plot_failure_mix(mix, ax, variant)
        if (i + 1) % cols and i + 1 < len(variants):
            ax.get_legend().remove()  # one legend per row, at its right
    for ax in axes[len(variants):]:
        ax.set_visible(False)
    fig.suptitle(f"Why facts are missed · {model}", fontsize=11)
    return save_figure(fig, inside(out, f"failures_{stem}"))


def failure_report(records: pd.DataFrame, out: Path, inside: Callable[[Path, str], Path],
                   stems: Callable[[list[tuple[str, ...]]], dict[tuple[str, ...], str]]) -> FailureReport:
    """The failure section of ``records`` (with ``variant``): charts and ``failure_types.csv`` written into ``out``."""
    trials = failure_trials(records)
    if trials.empty:
        return FailureReport()
    mix, table = failure_mix(trials), failure_table(trials)
    path = inside(out, "failure_types.csv")
    table.to_csv(path, index=False)
    model_of = dict(zip(trials["variant"].astype("str"), trials["model"]))
    table = table.assign(model=table["variant"].map(model_of))
    blocks: list[Block] = [Heading(2, "Why facts are missed", "failures"), _intro()]
    charts: list[Path] = []
    models = list(dict.fromkeys(table["model"]))
    stem_of = stems([(m,) for m in models])
    for model in models:
        rows = table[table["model"] == model]
        written = _model_charts(mix, model, list(dict.fromkeys(rows["variant"])), out, inside, stem_of[(model,)])
        charts += written
        blocks += [Heading(3, model), *(Image(p, f"Failure types by position band: {model}", wide=True)
                                        for p in written if p.suffix == ".png"), _table(rows, model)]
    examples = look_alike_examples(trials)
    if not examples.empty:
        blocks += [Para((Strong("Look-alike answers. "), "Trials answered with a planted look-alike's value (the first "
                         f"{EXAMPLES_SHOWN} at most); a look-alike's number is its place in the record's list of "
                         "planted look-alikes, from 1.")),
                   Table(tuple(examples.columns), tuple(tuple(r) for r in examples.itertuples(index=False)),
                         (False, True, True, False, False, True, False, True), wrap=True)]
    focus = focus_bullets(trials)
    if focus is not None:
        blocks.append(focus)
    return FailureReport(blocks, charts, [path], miss_lines(trials))


def focus_bullets(trials: pd.DataFrame) -> Bullets | None:
    """Where the answer step looked on wrong answers, per model (trials with captured attention only)."""
    if "attention_focus" not in trials.columns:
        return None
    focus = trials["attention_focus"].astype("object")
    known = focus.map(lambda v: isinstance(v, str) and v in ("fact", "look_alike", "neither"))
    misses = trials[(known & (trials["failure"] != "correct")).to_numpy()]
    if misses.empty:
        return None
    items = []
    for model, group in misses.groupby("model", sort=False):
        counts = group["attention_focus"].astype("str").value_counts()
        parts = [f"{label} {int(counts.get(name, 0))}" for name, label in
                 (("fact", "looked at the fact"), ("look_alike", "looked at a look-alike"), ("neither", "neither"))]
        items.append((Strong(f"{model}: "), f"of {len(group)} misses with attention captured, " + ", ".join(parts)))
    return Bullets(tuple(items))

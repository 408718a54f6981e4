"""The report's "Layout recommendation" section: one plain-language block per model (see ``recommend.py``)."""

from __future__ import annotations

import pandas as pd

from evalkit.report.document.blocks import Block, Bullets, Heading, Para, Strong, Table
from evalkit.report.document.findings import ci, pct, points
from evalkit.report.data.labels import VARIANT_SEPARATOR
from evalkit.report.analysis.recommend import (
    RELIABLE_ACCURACY,
    RELIABLE_LOWER_BOUND,
    band_reliability,
    layout_accuracy,
    layout_pairs,
    layout_trials,
    trials_for_reliable_band,
)
from evalkit.report.document.sections import ReportData, ci_cell


def recommendation_blocks(data: ReportData) -> list[Block]:
    """Per model: the layout to use, how sure that is, the reliable and worst depth bands, the controls."""
    trials = layout_trials(data.df)
    if trials.empty or trials["layout"].nunique() < 2:
        return []
    accuracy, pairs, bands = layout_accuracy(trials), layout_pairs(trials), band_reliability(trials)
    need = trials_for_reliable_band()
    blocks: list[Block] = [
        Heading(2, "Layout recommendation", "layout-recommendation"),
        Para(f"Layouts are compared on the same trials (same task, length, depth and sample: the same fact in the "
             f"same text), so differences come from the layout alone. Intervals are 95% and count samples (a layout's "
             f"rate pools each sample's depths and lengths): a paired bootstrap over samples for differences, Wilson "
             f"on the design-effect count for rates; p is McNemar's exact test. A depth band is reliable when at least "
             f"{RELIABLE_ACCURACY:.0%} of its trials are right and the interval's lower end is at least "
             f"{RELIABLE_LOWER_BOUND:.0%}, which takes at least {need} trials in the band."),
    ]
    for model, ranked in accuracy.groupby("model", sort=False):
        best = ranked.iloc[0]
        blocks.append(Heading(3, model))
        blocks.append(Para((Strong(f"Use: {best['layout']}. "),
                            f"It found the fact in {pct(best['accuracy'])} of {best['n']} placement trials "
                            f"({ci(best['ci_low'], best['ci_high'])}). ")))
        items = [_pair_sentence(r) for r in pairs[pairs["model"] == model].itertuples(index=False)]
        if items:
            blocks.append(Bullets(tuple(items)))
        blocks.append(Para(_band_text(bands[(bands["model"] == model) & (bands["layout"] == best["layout"])], need)))
        control = _control_text(data.controls, model, str(best["layout"]))
        oracle = data.controls[(data.controls["variant"] == model + VARIANT_SEPARATOR + str(best["layout"]))
                               & (data.controls["control"] == "oracle")]
        if not oracle.empty and oracle["n"].sum() > 0:
            ceiling = oracle["correct"].sum() / oracle["n"].sum()
            control += (f" With the fact alone the model answered {pct(ceiling)}; placed in filler text, "
                        f"{pct(best['accuracy'])}: the filler costs {points(max(ceiling - best['accuracy'], 0.0)).lstrip('+')}.")
        if control:
            blocks.append(Para(control))
        blocks.append(_layout_table(data.controls, model, ranked))
    return blocks


def _pair_sentence(r) -> str:
    same = f"on the same {r.pairs} trials"
    if r.diff_low <= 0 <= r.diff_high:
        verdict = "the data cannot tell the two apart"
    else:
        verdict = f"{r.best} is better" if r.difference > 0 else f"{r.layout} is better"
    return (f"vs {r.layout} ({pct(r.accuracy)}) {same}: {points(r.difference)} for {r.best} (95% CI "
            f"{points(r.diff_low)[:-4]} to {points(r.diff_high)[:-4]}), McNemar p = {r.p_value:.2g} "
            f"({r.best_only} trials only {r.best} got right, {r.layout_only} only {r.layout}); {verdict}.")


def _band_label(row) -> str:
    low, high = row.depth_min * 100, row.depth_max * 100
    where = f"{low:.4g}%" if low == high else f"{low:.4g}–{high:.4g}%"
    return f"{row.band} ({where} depth)"


def _band_text(bands: pd.DataFrame, need: int) -> str:
    """Per task under the recommended layout: the reliable depth bands and the worst band."""
    sentences = []
    for task, rows in bands.groupby("task", sort=False):
        reliable = [_band_label(r) for r in rows.itertuples(index=False) if r.reliable]
        worst, best = rows.loc[rows["accuracy"].idxmin()], rows.loc[rows["accuracy"].idxmax()]
        if worst["accuracy"] == best["accuracy"]:
            worst_text = f"every band scored {pct(worst['accuracy'])} (n={worst['n']} in the smallest)"
        else:
            worst_text = (f"best band {_band_label(best)}: {pct(best['accuracy'])} "
                          f"({ci(best['ci_low'], best['ci_high'])}, n={best['n']}); worst band {_band_label(worst)}: "
                          f"{pct(worst['accuracy'])} ({ci(worst['ci_low'], worst['ci_high'])}, n={worst['n']})")
        if reliable:
            sentences.append(f"{task}: reliable {', '.join(reliable)}; {worst_text}.")
        else:
            most = int(rows["n"].max())
            sentences.append(f"{task}: no band is reliable (the largest band has {most} trials; {need} are needed "
                             f"even with every answer right); {worst_text}.")
    return "Where to put the fact with this layout. " + " ".join(sentences)


def _control_text(controls: pd.DataFrame, model: str, layout: str) -> str:
    rows = controls[controls["variant"] == model + VARIANT_SEPARATOR + layout]
    if rows.empty:
        return ""
    parts = []
    for task, group in rows.groupby("task", sort=False):
        rates = {r.control: f"{pct(r.accuracy)} (n={r.n})" for r in group.itertuples(index=False)}
        parts.append(f"{task}: closed book {rates.get('closed_book', 'not run')}, oracle {rates.get('oracle', 'not run')}")
    return ("Controls with this layout (closed book = the question without the fact, i.e. guessing; oracle = the "
            "fact with no filler text, the ceiling): " + "; ".join(parts) + ".")


def _layout_table(controls: pd.DataFrame, model: str, ranked: pd.DataFrame) -> Table:
    def rate(layout: str, control: str) -> str:
        rows = controls[(controls["variant"] == model + VARIANT_SEPARATOR + layout) & (controls["control"] == control)]
        if rows.empty:
            return "–"
        n, correct = int(rows["n"].sum()), int(rows["correct"].sum())
        return f"{pct(correct / n) if n else '–'} (n={n})"

    return Table(("layout", "accuracy [95% CI] (n)", "closed book", "oracle"),
                 tuple((r.layout, ci_cell(r.accuracy, r.ci_low, r.ci_high, r.n), rate(r.layout, "closed_book"),
                        rate(r.layout, "oracle")) for r in ranked.itertuples(index=False)),
                 (False, True, True, True), caption=f"{model}: every layout, best first (all tasks pooled)")

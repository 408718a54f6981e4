"""The numbers of the report's decision block: per model, where a fact is safe, which layout, how sure.

Per model the block describes one *variant*: the recommended layout (``recommend.layout_accuracy``'s best)
when the records carry layouts, else the model's first variant. For it, per tested context length (tasks
pooled), every tested depth gets a colour from its Wilson 95% interval:

- ``safe`` (green): lower bound >= ``SAFE_LOWER_BOUND``: the data show the fact is found there;
- ``danger`` (red): upper bound < ``DANGER_UPPER_BOUND``: the data show facts placed there are lost often;
- ``unsure`` (amber): neither: too few trials to call (with one or two trials a cell is always amber).

Runs of adjacent tested depths with the same colour form the safe and danger *bands* of a length, each with
the pooled accuracy and interval of its trials. The block also holds the recommended layout's paired gain
over the runner-up (paired bootstrap and McNemar, ``recommend.layout_pairs``), the effective context length
(``indices.effective_context_length``), the control rates and one open question with a power estimate:
how many trials per arm a two-sided test at alpha = 0.05 needs to detect the observed gap with 80% power
(Cohen's h from statsmodels' ``proportion_effectsize``, the normal-approximation power equation of its
``NormalIndPower``; for paired layouts this is conservative), times the design effect of the pooled trials
(``clusters.py``: trials that share a sample's needle count for less than independent ones). Bands pool several
depths of each sample, so their intervals are the design-effect Wilson ones over samples; a cell's stays Wilson.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
from scipy.stats import norm
from statsmodels.stats.proportion import proportion_effectsize

from evalkit.report.analysis.clusters import cluster_labels, cluster_wilson_interval
from evalkit.report.analysis.indices import DEFAULT_THRESHOLD, completed_trials, effective_context_length
from evalkit.report.analysis.recommend import layout_accuracy, layout_pairs, layout_trials
from evalkit.report.analysis.stats import difference_interval, wilson_interval, wilson_intervals
from evalkit.report.analysis.truncation import notable_truncation
from evalkit.report.data.documents import fraction_position, on_fraction_axis, single_documents_total
from evalkit.report.data.labels import CONTENT_AXES, axis_text, prompt_layout_labels

SAFE_LOWER_BOUND = 0.70  # 9/9 right gives 0.70: nine clean trials at a depth call it safe
DANGER_UPPER_BOUND = 0.75  # 95% sure that fewer than 3 in 4 facts placed there are found (0/2 gives 0.66)
POWER = 0.80
ALPHA = 0.05
SAFE, UNSURE, DANGER = "safe", "unsure", "danger"


@dataclass(frozen=True)
class DepthCell:
    """One tested depth at one length: trials, accuracy, Wilson 95% interval and its colour."""

    depth: float
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    verdict: str  # SAFE, UNSURE or DANGER


@dataclass(frozen=True)
class DepthRun:
    """Adjacent tested depths with one verdict, pooled: ``depth_low``..``depth_high`` (fractions)."""

    verdict: str
    depth_low: float
    depth_high: float
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class LengthVerdict:
    """One context length: every tested depth's cell, and the safe and danger bands."""

    context_length: int
    cells: tuple[DepthCell, ...]
    safe: tuple[DepthRun, ...]
    danger: tuple[DepthRun, ...]


@dataclass(frozen=True)
class LayoutChoice:
    """The recommended layout and its paired comparison with the runner-up (None fields: one layout only)."""

    layout: str
    accuracy: float
    ci_low: float
    ci_high: float
    n: int
    runner_up: str | None = None
    pairs: int = 0
    gain: float = math.nan  # best minus runner-up on the paired trials
    gain_low: float = math.nan
    gain_high: float = math.nan
    p_value: float = math.nan
    design_effect: float = 1.0  # of the best layout's pooled trials: how much a sample's depths agree (clusters.py)


@dataclass(frozen=True)
class OpenQuestion:
    """What the data cannot tell yet: a gap whose interval includes 0, and the trials per arm that would tell."""

    what: str  # e.g. "question_first vs question_last"
    gap: float  # observed difference of accuracies
    low: float
    high: float
    n_now: int  # trials per arm now
    n_needed: int | None  # per arm for 80% power at alpha 0.05; None when the observed gap is 0


@dataclass(frozen=True)
class ModelDecision:
    """Everything the decision block says about one model."""

    model: str
    variant: str
    lengths: tuple[LengthVerdict, ...]
    layout: LayoutChoice | None
    effective: pd.DataFrame  # rows of effective_context_length for ``variant`` (one per task)
    controls: pd.DataFrame  # rows of control_rates for ``variant``
    question: OpenQuestion | None
    # documents tasks only (all of the variant's trials, one K): cells are gold positions, ``depth`` = index / (K - 1)
    documents_total: int | None = None
    truncation: tuple[int, int] | None = None  # (cut-off answers, trials) when notable (``truncation.py``)
    hardest: bool = False  # ``variant`` is the hardest of several content conditions (``_variant_of``)


def verdict_of(ci_low: float, ci_high: float) -> str:
    """``SAFE``, ``UNSURE`` or ``DANGER`` from a Wilson 95% interval (see the module docstring)."""
    if ci_low >= SAFE_LOWER_BOUND:
        return SAFE
    return DANGER if ci_high < DANGER_UPPER_BOUND else UNSURE


def depth_cells(trials: pd.DataFrame) -> tuple[DepthCell, ...]:
    """The cells of one variant x length (``completed_trials`` rows), tasks pooled, in depth order."""
    table = trials.groupby("depth", sort=True)["_correct"].agg(["size", "sum"])
    lows, highs = wilson_intervals(table["sum"].to_numpy(), table["size"].to_numpy())
    return tuple(DepthCell(float(d), int(n), int(k), k / n, float(lo), float(hi), verdict_of(float(lo), float(hi)))
                 for (d, n, k), lo, hi in zip(table[["size", "sum"]].itertuples(), lows, highs))


def depth_runs(cells: tuple[DepthCell, ...], verdict: str, trials: pd.DataFrame | None = None) -> tuple[DepthRun, ...]:
    """Maximal runs of adjacent ``cells`` with ``verdict``, each pooled into one interval.

    With the cells' ``trials`` the pooled interval is the design-effect Wilson one over samples (a run pools
    several depths of each sample, ``clusters.py``); without them, plain Wilson over the counts.
    """
    runs, current = [], []
    for cell in [*cells, None]:
        if cell is not None and cell.verdict == verdict:
            current.append(cell)
            continue
        if current:
            n, k = sum(c.n for c in current), sum(c.correct for c in current)
            if trials is None:
                low, high = wilson_interval(k, n)
            else:
                pooled = trials[trials["depth"].isin([c.depth for c in current]).to_numpy()]
                low, high = cluster_wilson_interval(pooled["_correct"], cluster_labels(pooled))
            runs.append(DepthRun(verdict, current[0].depth, current[-1].depth, n, k, k / n, low, high))
        current = []
    return tuple(runs)


def length_verdicts(trials: pd.DataFrame) -> tuple[LengthVerdict, ...]:
    """Per tested length of one variant's completed trials: cells, safe bands, danger bands."""
    out = []
    for length, sub in trials.groupby("context_length", sort=True):
        cells = depth_cells(sub)
        out.append(LengthVerdict(int(length), cells, depth_runs(cells, SAFE, sub), depth_runs(cells, DANGER, sub)))
    return tuple(out)


def trials_needed(p1: float, p2: float, power: float = POWER, alpha: float = ALPHA) -> int | None:
    """Trials per arm for a two-sided test to detect ``p1`` vs ``p2`` (Cohen's h); None when they are equal."""
    effect = abs(float(proportion_effectsize(p1, p2)))
    if effect < 1e-9:
        return None
    # NormalIndPower's equation without its far-tail term, solved in closed form: its root finder fails to
    # converge for small effects (thousands of trials), where the far tail is negligible anyway
    n = 2.0 * ((norm.ppf(1 - alpha / 2) + norm.ppf(power)) / effect) ** 2
    return int(math.ceil(n - 1e-9))


def trials_to_call_safe(accuracy: float, limit: int = 100_000) -> int | None:
    """Fewest trials at ``accuracy`` whose Wilson lower bound reaches ``SAFE_LOWER_BOUND``; None if none can."""
    if accuracy <= SAFE_LOWER_BOUND:
        return None
    n = 1
    while n <= limit:
        if wilson_interval(accuracy * n, n)[0] >= SAFE_LOWER_BOUND:  # the observed rate, kept exactly
            return n
        n = n + 1 if n < 64 else int(n * 1.05)
    return None


def layout_choice(df: pd.DataFrame, model: str) -> LayoutChoice | None:
    """The best layout of ``model`` with its paired gain over the runner-up; None without two layouts."""
    trials = layout_trials(df)
    trials = trials[trials["model"] == model]
    if trials.empty or trials["layout"].nunique() < 2:
        return None
    ranked = layout_accuracy(trials)
    best = ranked.iloc[0]
    choice = dict(layout=str(best["layout"]), accuracy=float(best["accuracy"]), ci_low=float(best["ci_low"]),
                  ci_high=float(best["ci_high"]), n=int(best["n"]), design_effect=float(best["design_effect"]))
    pairs = layout_pairs(trials)
    if pairs.empty:
        return LayoutChoice(**choice)
    top = pairs.iloc[0]  # layout_pairs lists the others in rank order: the first is the runner-up
    return LayoutChoice(**choice, runner_up=str(top["layout"]), pairs=int(top["pairs"]), gain=float(top["difference"]),
                        gain_low=float(top["diff_low"]), gain_high=float(top["diff_high"]),
                        p_value=float(top["p_value"]))


def _layout_question(choice: LayoutChoice | None) -> OpenQuestion | None:
    """The layout comparison, when its interval includes 0."""
    if choice is None or choice.runner_up is None or not choice.gain_low <= 0 <= choice.gain_high:
        return None
    p_best = choice.accuracy
    p_other = p_best - choice.gain  # accuracies on the paired trials differ from the pooled ones only slightly
    needed = trials_needed(p_best, min(max(p_other, 0.0), 1.0))
    if needed is not None:  # the trials pool a sample's depths and lengths: each counts 1 / design effect
        needed = int(math.ceil(needed * choice.design_effect - 1e-9))
    return OpenQuestion(f"layout {choice.layout} vs {choice.runner_up}", choice.gain, choice.gain_low,
                        choice.gain_high, choice.pairs, needed)


def _where(depth: float, total: int | None) -> str:
    """``"depth 25%"``, or on the gold document axis ``"gold document position 3 of 10"``."""
    if total is None:
        return f"depth {depth * 100:.4g}%"
    return f"gold document position {fraction_position(depth, total)} of {total}"


def _depth_question(lengths: tuple[LengthVerdict, ...], total: int | None = None) -> OpenQuestion | None:
    """Per length the worst depth against the best; of those whose interval includes 0, the largest gap."""
    found = []
    for verdict in lengths:
        if len(verdict.cells) < 2:
            continue
        worst = min(verdict.cells, key=lambda c: c.accuracy)
        best = max(verdict.cells, key=lambda c: c.accuracy)
        diff, low, high = (float(x) for x in difference_interval(best.correct, best.n, worst.correct, worst.n))
        if diff > 0 and low <= 0 <= high:
            what = f"{_where(worst.depth, total)} vs {_where(best.depth, total)} at {verdict.context_length:,} tokens"
            found.append(OpenQuestion(what, diff, low, high, min(worst.n, best.n),
                                      trials_needed(best.accuracy, worst.accuracy)))
    return max(found, key=lambda q: q.gap) if found else None


def model_decisions(df: pd.DataFrame, controls: pd.DataFrame,
                    threshold: float = DEFAULT_THRESHOLD) -> tuple[ModelDecision, ...]:
    """One ``ModelDecision`` per model of ``df`` (records with a ``variant`` column), in variant order."""
    done = completed_trials(df)
    out = []
    for model in dict.fromkeys(str(m) for m in df.sort_values("variant")["model"]):
        choice = layout_choice(df, model)
        mine = done[done["model"].astype("str") == model]
        if mine.empty:
            continue
        variant, hardest = _variant_of(mine, choice)
        trials = mine[mine["variant"] == variant]
        total = single_documents_total(trials)
        lengths = length_verdicts(trials if total is None else on_fraction_axis(trials, total))
        effective = effective_context_length(trials, threshold)
        question = _layout_question(choice) or _depth_question(lengths, total)
        out.append(ModelDecision(model, variant, lengths, choice, effective,
                                 controls[controls["variant"].astype("str") == variant] if not controls.empty
                                 else controls, question, total, notable_truncation(trials), hardest))
    return tuple(out)


def _variant_of(trials: pd.DataFrame, choice: LayoutChoice | None) -> tuple[str, bool]:
    """The variant the block describes, and whether it is the hardest content condition.

    Among the recommended layout's trials (else all of the model's): where a content axis varies (look-alikes,
    haystack order, needle variant; no mitigation arms), the condition of lowest accuracy, since a user cannot
    choose the content of their prompts and a position safe there is the one to rely on; else the first variant.
    """
    pool = trials
    if choice is not None:
        chosen = trials[(prompt_layout_labels(trials) == choice.layout).to_numpy()]
        pool = chosen if not chosen.empty else trials
    arms = axis_text(pool, "mitigation").nunique() if "mitigation" in pool.columns else 1
    if arms <= 1 and any(axis_text(pool, a).nunique() > 1 for a in CONTENT_AXES if a in pool.columns):
        right = pool["correct"].fillna(False).astype("float64")
        accuracy = right.groupby(pool["variant"].astype("str"), sort=False).mean()
        if accuracy.nunique() > 1:
            return str(accuracy.idxmin()), True
    return str(pool["variant"].iloc[0]), False

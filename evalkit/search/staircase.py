"""A sequential bisection for the setting where accuracy at the best position is near a target.

The settings (context lengths, numbers of look-alikes) are sorted easiest first, and accuracy is taken to fall as
the setting grows. Each step runs ``samples_per_step`` more samples at one setting (every search depth) and
reads the best depth's accuracy with its 95% Wilson interval:

- the interval lies above the target: the setting is too easy, the search moves to harder settings;
- it lies below: too hard, it moves to easier ones;
- it lies within ``tolerance`` of the target on both sides: found (at 95%, the setting's true accuracy is within
  the tolerance);
- otherwise (it holds the target but is wider): more samples at the same setting (a staircase that stays put).

The search stops when it finds a setting, when two neighbouring settings bracket the target (the easier too
easy, the harder too hard: "bracketed"), when the easiest is already too hard or the hardest still too easy,
or when the next step would exceed the trial budget: the budget is never exceeded. Everything here is pure:
``evaluate`` runs (or simulates) the trials, so tests check the search on a model with a known curve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from evalkit.report.analysis.stats import wilson_interval

# a context-length step: at most 2^(1/4) (19%) above the last, a multiple of 64 tokens
LENGTH_RATIO = 2 ** 0.25
LENGTH_QUANTUM = 64

# evaluate(setting, samples) -> (successes, trials) at each search depth over samples 0..samples-1
Evaluate = Callable[[int, int], Sequence[tuple[int, int]]]


@dataclass(frozen=True)
class SearchRule:
    """What the search aims at and may spend (the ``search:`` block's numbers)."""

    target: float
    tolerance: float
    samples_per_step: int
    budget: int  # trials, never exceeded
    depths: int  # search depths per sample (a step costs samples_per_step * depths trials)


@dataclass(frozen=True)
class Step:
    """One step: the setting, the samples so far there, each depth's successes, and what was decided."""

    setting: int
    samples: int
    successes: tuple[int, ...]  # per search depth, over ``samples``
    best_depth: int  # index into the search depths
    accuracy: float  # the best depth's
    interval: tuple[float, float]  # its 95% Wilson interval
    decision: str  # "too_easy", "too_hard", "found" or "more"
    trials_used: int  # all steps' trials up to and including this one


@dataclass(frozen=True)
class SearchOutcome:
    """Where the search stopped: the setting it gives, with its accuracy and interval, and every step.

    ``status``: ``found`` (the interval lies within the tolerance of the target), ``bracketed`` (the target falls between
    two neighbouring settings; the one nearer the target is given), ``budget`` (stopped by the budget; the step
    nearest the target is given), ``too_hard`` (the easiest setting is below the target), ``too_easy`` (the
    hardest is above it).
    """

    status: str
    setting: int
    accuracy: float
    interval: tuple[float, float]
    samples: int
    steps: tuple[Step, ...]
    trials_used: int


def candidate_settings(axis: str, low: int, high: int) -> list[int]:
    """The settings the search may try, easiest first: every count, or lengths about 19% apart (x64 tokens)."""
    if axis != "context_length":
        return list(range(low, high + 1))
    steps = math.ceil(math.log(high / low) / math.log(LENGTH_RATIO))
    lengths = {low, high}
    for index in range(1, steps):
        lengths.add(max(low, round(low * (high / low) ** (index / steps) / LENGTH_QUANTUM) * LENGTH_QUANTUM))
    return sorted(length for length in lengths if low <= length <= high)


def judge(setting: int, samples: int, successes: Sequence[tuple[int, int]], rule: SearchRule,
          trials_used: int) -> Step:
    """The step's reading of one setting: its best depth, that depth's interval, and the decision.

    ``successes`` holds (correct, finished) per depth; a setting where no trial finished (every one skipped, out
    of memory) reads as too hard: it cannot be run here.
    """
    counts = tuple(correct for correct, _ in successes)
    finished = [index for index, (_, n) in enumerate(successes) if n]
    if not finished:
        return Step(setting, samples, counts, 0, math.nan, (0.0, 0.0), "too_hard", trials_used)
    best = max(finished, key=lambda index: (successes[index][0] / successes[index][1], -index))
    correct, n = successes[best]
    low, high = wilson_interval(correct, n)
    if rule.target - rule.tolerance <= low and high <= rule.target + rule.tolerance:
        decision = "found"  # the whole interval lies within the tolerance of the target
    elif low > rule.target:
        decision = "too_easy"
    elif high < rule.target:
        decision = "too_hard"
    else:
        decision = "more"
    return Step(setting, samples, counts, best, correct / n, (low, high), decision, trials_used)


def run_search(candidates: Sequence[int], evaluate: Evaluate, rule: SearchRule) -> SearchOutcome:
    """Bisect ``candidates`` (easiest first) for the target; see the module docstring."""
    steps: list[Step] = []
    step_cost = rule.samples_per_step * rule.depths
    easy, hard = 0, len(candidates) - 1  # every index below ``easy`` is too easy, every one above ``hard`` too hard
    while easy <= hard:
        index = (easy + hard) // 2
        samples = 0
        while True:
            used = steps[-1].trials_used if steps else 0
            if used + step_cost > rule.budget:
                return _outcome("budget", steps, rule)
            samples += rule.samples_per_step
            steps.append(judge(candidates[index], samples, evaluate(candidates[index], samples), rule, used + step_cost))
            if steps[-1].decision != "more":
                break
        if steps[-1].decision == "found":
            return _outcome("found", steps, rule)
        easy, hard = (index + 1, hard) if steps[-1].decision == "too_easy" else (easy, index - 1)
    if hard < 0:
        return _outcome("too_hard", steps, rule)
    if easy >= len(candidates):
        return _outcome("too_easy", steps, rule)
    return _outcome("bracketed", steps, rule)


def _outcome(status: str, steps: list[Step], rule: SearchRule) -> SearchOutcome:
    """The outcome: the last step when found, else the last reading of each setting, nearest the target."""
    if not steps:
        return SearchOutcome(status, 0, math.nan, (math.nan, math.nan), 0, (), 0)
    last_reading = {step.setting: step for step in steps if not math.isnan(step.accuracy)}  # the latest has all
    if status == "found" or not last_reading:  # its samples; a setting that never ran cannot be chosen
        chosen = steps[-1]
    elif status in ("too_easy", "too_hard"):  # the end of the range nearest the target
        chosen = last_reading[(max if status == "too_easy" else min)(last_reading)]
    else:
        chosen = min(last_reading.values(), key=lambda step: (abs(step.accuracy - rule.target), step.setting))
    return SearchOutcome(status, chosen.setting, chosen.accuracy, chosen.interval, chosen.samples, tuple(steps),
                         steps[-1].trials_used)

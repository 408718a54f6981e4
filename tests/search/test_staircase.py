"""The difficulty search on simulated models whose accuracy curve is known (no model runs)."""

from __future__ import annotations

import math
import random

import pytest

from evalkit.search.staircase import (
    LENGTH_QUANTUM, LENGTH_RATIO, SearchRule, candidate_settings, judge, run_search,
)

RULE = SearchRule(target=0.8, tolerance=0.1, samples_per_step=10, budget=300, depths=2)


class SimulatedModel:
    """Accuracy falls logistically in log length; the second depth is 30 points worse (the best is depth 0).

    A trial's outcome depends only on (seed, setting, sample, depth), so more samples at a setting extend the
    earlier ones as a resumed run directory does. ``trials`` counts distinct trials actually run.
    """

    def __init__(self, midpoint: float, seed: int, slope: float = 0.35):
        self.midpoint, self.seed, self.slope = midpoint, seed, slope
        self.trials: set[tuple[int, int, int]] = set()

    def accuracy(self, setting: int, depth: int = 0) -> float:
        top = 1 / (1 + math.exp((math.log(setting) - math.log(self.midpoint)) / self.slope))
        return max(0.0, top - 0.3 * depth)

    def __call__(self, setting: int, samples: int) -> list[tuple[int, int]]:
        out = []
        for depth in range(2):
            correct = 0
            for sample in range(samples):
                self.trials.add((setting, sample, depth))
                draw = random.Random(f"{self.seed}/{setting}/{sample}/{depth}").random()
                correct += draw < self.accuracy(setting, depth)
            out.append((correct, samples))
        return out

    def setting_at(self, accuracy: float) -> float:
        """The length where the best depth's accuracy is ``accuracy`` (inverse of the curve)."""
        return self.midpoint * math.exp(self.slope * math.log(1 / accuracy - 1))


def test_lengths_are_multiples_of_the_quantum_and_close_enough_to_bisect():
    lengths = candidate_settings("context_length", 256, 8192)
    assert lengths[0] == 256 and lengths[-1] == 8192
    assert all(length % LENGTH_QUANTUM == 0 for length in lengths)
    assert all(b / a <= LENGTH_RATIO * 1.06 for a, b in zip(lengths, lengths[1:]))  # rounding to 64 adds a little
    assert lengths == sorted(set(lengths))
    assert candidate_settings("distractor_count", 0, 5) == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("midpoint", [900.0, 3000.0])
def test_the_search_finds_the_known_setting_within_its_tolerance_and_never_exceeds_its_budget(midpoint):
    candidates = candidate_settings("context_length", 256, 16384)
    outcomes = []
    for seed in range(40):
        model = SimulatedModel(midpoint, seed)
        outcome = run_search(candidates, model, RULE)
        assert len(model.trials) == outcome.trials_used <= RULE.budget  # counted exactly, never above
        outcomes.append((outcome.status, abs(model.accuracy(outcome.setting) - RULE.target) <= RULE.tolerance))
    found = [within for status, within in outcomes if status == "found"]
    # "found" is the promise: the setting's true accuracy lies within the tolerance (200 seeds: 288 of 288)
    assert len(found) >= 20 and all(found)
    # the rest stopped on the budget (or bracketed) and give the reading nearest the target: mostly within it
    assert {status for status, _ in outcomes} <= {"found", "bracketed", "budget"}
    assert sum(within for _, within in outcomes) >= 34


def test_a_step_model_is_bracketed_at_its_edge():
    # accuracy 1 up to 2,000 tokens, 0 beyond: the target lies between the two neighbouring lengths
    candidates = candidate_settings("context_length", 256, 8192)

    def step_model(setting, samples):
        return [(samples if setting <= 2000 else 0, samples)] * 2

    outcome = run_search(candidates, step_model, RULE)
    assert outcome.status == "bracketed"
    tried = {step.setting: step.decision for step in outcome.steps}
    easy_edge = max(length for length in candidates if length <= 2000)
    hard_edge = min(length for length in candidates if length > 2000)
    assert tried[easy_edge] == "too_easy" and tried[hard_edge] == "too_hard"


def test_the_ends_of_the_range_are_reported_when_the_target_lies_outside_it():
    candidates = candidate_settings("distractor_count", 0, 8)
    never = run_search(candidates, lambda s, n: [(0, n), (0, n)], RULE)
    assert never.status == "too_hard" and never.setting == 0
    always = run_search(candidates, lambda s, n: [(n, n), (n, n)], RULE)
    assert always.status == "too_easy" and always.setting == 8


def test_a_budget_too_small_to_decide_stops_before_exceeding_it():
    rule = SearchRule(target=0.8, tolerance=0.02, samples_per_step=10, budget=95, depths=2)
    model = SimulatedModel(2000.0, seed=1)
    outcome = run_search(candidate_settings("context_length", 256, 8192), model, rule)
    assert outcome.status == "budget"
    assert outcome.trials_used == len(model.trials) == 80  # a fifth step (100) would exceed 95


def test_more_samples_are_taken_while_the_interval_holds_the_target_but_is_too_wide():
    step = judge(1024, 10, [(8, 10), (5, 10)], RULE, 20)
    assert step.decision == "more" and step.best_depth == 0 and step.accuracy == 0.8
    assert step.interval[0] < 0.8 < step.interval[1]
    narrow = judge(1024, 200, [(160, 200), (100, 200)], RULE, 400)
    assert narrow.decision == "found"


def test_a_setting_where_every_trial_was_skipped_reads_as_too_hard():
    step = judge(65536, 10, [(0, 0), (0, 0)], RULE, 20)
    assert step.decision == "too_hard" and math.isnan(step.accuracy)


def test_the_best_depth_is_the_one_with_the_higher_rate_not_the_higher_count():
    step = judge(512, 10, [(6, 10), (5, 5)], RULE, 20)  # depth 1 had trials skipped
    assert step.best_depth == 1 and step.accuracy == 1.0

"""Cluster-aware (design-effect Wilson) intervals for rates pooled over a sample's depths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from evalkit.report.analysis.clusters import cluster_wilson, cluster_wilson_interval, design_effect
from evalkit.report.analysis.stats import wilson_interval


def _run(outcomes: dict[int, list[int]]) -> pd.DataFrame:
    """Trials of one task: sample -> its 0/1 outcome at each depth (the sample's seed is shared by its depths)."""
    rows = [dict(task="t", sample=s, seed=1000 + s, depth=i / 10, _correct=c)
            for s, cs in outcomes.items() for i, c in enumerate(cs)]
    return pd.DataFrame(rows)


def test_one_sample_failing_at_every_depth_widens_the_pooled_interval():
    # the audit's case: 3 values x 10 depths, one value missed at 7 depths (23/30 right)
    frame = _run({0: [1] * 10, 1: [1] * 10, 2: [0] * 7 + [1] * 3})
    naive = wilson_interval(23, 30)
    low, high = cluster_wilson_interval(frame["_correct"], frame["seed"])
    assert low < naive[0] - 0.1 and high >= naive[1]
    assert design_effect(frame["_correct"], frame["seed"]) > 3
    row = cluster_wilson(frame, ["task"]).iloc[0]
    assert (row["n"], row["correct"], row["clusters"]) == (30, 23, 3)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))


def test_independent_samples_give_the_plain_wilson_interval():
    # one trial per sample: 30 clusters of one, 23 right
    frame = _run({s: [int(s < 23)] for s in range(30)})
    assert design_effect(frame["_correct"], frame["seed"]) == 1.0
    assert cluster_wilson_interval(frame["_correct"], frame["seed"]) == pytest.approx(wilson_interval(23, 30), abs=1e-12)


def test_design_effect_bounds():
    assert design_effect([1, 1, 0, 0], ["a", "a", "b", "b"]) == 2.0  # each sample agrees with itself: n / G
    assert design_effect([1, 0, 1, 0], ["a", "a", "b", "b"]) == 1.0  # spread within samples only: never below 1
    assert design_effect([1, 0, 1], ["a", "a", "a"]) == 3.0  # one sample: it counts once
    assert design_effect([1, 1, 1], ["a", "b", "b"]) == 1.0  # all right: nothing to widen
    assert np.isnan(cluster_wilson_interval([], [])[0])


def test_clusters_are_task_and_seed_not_depth():
    # the same sample index in two tasks is two clusters; without a seed column the sample names the cluster
    frame = _run({0: [1, 0], 1: [1, 1]}).drop(columns="seed")
    frame = pd.concat([frame, frame.assign(task="u")], ignore_index=True)
    row = cluster_wilson(frame, ["depth"]).iloc[0]
    assert row["clusters"] == 4
    assert cluster_wilson(frame, ["sample"])["clusters"].tolist() == [2, 2]

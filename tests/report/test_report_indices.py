"""Position indices, effective length, variants, comparisons and controls against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from report_fixtures import GRID, MODEL, TASK, grid_records, make_record

from evalkit.report import (
    add_variants,
    band_table,
    comparison_table,
    control_rates,
    difference_interval,
    effective_context_length,
    length_comparison,
    new_figure,
    parse_threshold,
    plot_accuracy_difference,
    plot_variants_by_length,
    plot_variants_vs_depth,
    position_indices,
    summary_table,
    wilson_interval,
)
from evalkit.report.analysis.indices import band_of
from evalkit.report.data.labels import run_labels, variant_order

# depth -> (correct, n) at 1024 tokens; bands: start {0, .1}, early {.2}, middle {.3, .5, .7}, late {.8}, end {.95, 1}
BANDED = {0.0: (10, 10), 0.1: (8, 10), 0.2: (6, 10), 0.3: (5, 10), 0.5: (2, 10), 0.7: (5, 10),
          0.8: (7, 10), 0.95: (9, 10), 1.0: (10, 10)}


def frame(grid: dict, model: str = MODEL, run_dir: str = "runs/a", **columns) -> pd.DataFrame:
    """Records of ``grid`` as a frame; ``columns`` set further columns (e.g. the ``layout`` label)."""
    records = [dict(r, **columns) for r in grid_records(model, TASK, grid)]
    return pd.DataFrame(records).assign(run_dir=run_dir)


def banded(length: int = 1024) -> dict:
    return {(length, depth): counts for depth, counts in BANDED.items()}


# ---------------------------------------------------------------------------- Newcombe difference


@pytest.mark.parametrize(("a", "b", "low", "high"), [
    ((56, 70), (48, 80), 0.0524, 0.3339),  # Newcombe (1998), Table II, method 10
    ((9, 10), (3, 10), 0.1705, 0.8090),
])
def test_difference_interval_matches_newcombes_published_values(a, b, low, high):
    diff, lo, hi = difference_interval(*a, *b)
    assert diff == pytest.approx(a[0] / a[1] - b[0] / b[1])
    assert (lo, hi) == pytest.approx((low, high), abs=5e-5)
    assert all(np.isnan(difference_interval(0, 0, 1, 5)))  # no trials on one side


# ---------------------------------------------------------------------------- bands and indices


@pytest.mark.parametrize(("depth", "band"), [
    (0.0, "start"), (0.1, "start"), (0.1000001, "early"), (0.29, "early"), (0.3, "middle"), (0.7, "middle"),
    (0.71, "late"), (0.9, "end"), (1.0, "end"), (0.1 + 0.2, "middle"),  # 0.30000000000000004
])
def test_band_of_bounds(depth, band):
    assert band_of(depth) == band


def test_band_of_rejects_depths_outside_0_1():
    with pytest.raises(ValueError, match="outside"):
        band_of(1.2)


def test_band_table_pools_the_trials_of_each_band():
    table = band_table(frame(banded())).set_index("band", drop=False)
    assert list(table["band"]) == ["start", "early", "middle", "late", "end"]
    assert (table.loc["middle", "correct"], table.loc["middle", "n"]) == (12, 30)
    assert (table.loc["middle", "depth_min"], table.loc["middle", "depth_max"]) == (0.3, 0.7)
    assert table.loc["start", "accuracy"] == pytest.approx(18 / 20)
    assert (table.loc["end", "ci_low"], table.loc["end", "ci_high"]) == pytest.approx(wilson_interval(19, 20))


def test_primacy_recency_and_worst_band_match_hand_computed_values():
    row = position_indices(frame(banded())).iloc[0]
    assert (row["variant"], row["context_length"], row["n"]) == (MODEL, 1024, 90)
    assert row["accuracy"] == pytest.approx(62 / 90)
    assert row["start_accuracy"] == pytest.approx(0.9) and row["middle_accuracy"] == pytest.approx(0.4)
    assert row["end_accuracy"] == pytest.approx(0.95)
    assert row["primacy"] == pytest.approx(0.5) and row["recency"] == pytest.approx(0.55)
    # Newcombe by hand from the two Wilson intervals on samples: start 18/20 vs middle 12/30. In the middle band a
    # sample's three depths agree more than chance (samples 0-1 right at all three, 5-9 at none): design effect
    # sum_g (k_g - 0.4 * 3)^2 / 30^2 over 0.4 * 0.6 / 30 = (2 * 1.8^2 + 3 * 0.8^2 + 5 * 1.2^2) / 900 / 0.008 = 13 / 6;
    # at the start it comes out below 1, so 1 (plain Wilson)
    deff = 13 / 6
    (l1, u1), (l2, u2) = wilson_interval(18, 20), wilson_interval(12 / deff, 30 / deff)
    assert row["primacy_low"] == pytest.approx(0.5 - math.hypot(0.9 - l1, u2 - 0.4))
    assert row["primacy_high"] == pytest.approx(0.5 + math.hypot(u1 - 0.9, 0.4 - l2))
    assert row["primacy_low"] > 0  # the start reliably beats the middle here
    assert (row["worst_band"], row["worst_depth_min"], row["worst_depth_max"]) == ("middle", 0.3, 0.7)
    assert row["worst_accuracy"] == pytest.approx(0.4)
    assert (row["worst_ci_low"], row["worst_ci_high"]) == pytest.approx((l2, u2))
    assert row["worst_ci_low"] < wilson_interval(12, 30)[0]  # wider than if the 30 trials were independent


def test_indices_are_nan_when_a_band_is_untested_and_ties_pick_the_shallower_band():
    grid = {(1024, 0.5): (7, 10), (1024, 1.0): (7, 10), (2048, 0.5): (3, 10), (2048, 1.0): (9, 10)}
    table = position_indices(frame(grid)).set_index("context_length")
    assert np.isnan(table.loc[1024, "primacy"]) and np.isnan(table.loc[1024, "start_accuracy"])
    assert table.loc[1024, "recency"] == pytest.approx(0.0)
    assert table.loc[1024, "worst_band"] == "middle"  # middle and end tie at 70%
    assert table.loc[2048, "recency"] == pytest.approx(0.6) and table.loc[2048, "worst_band"] == "middle"


def test_indices_ignore_skipped_and_control_trials():
    df = frame(banded())
    noise = [make_record(trial_id="skip", depth=0.5, correct=True, status="skipped"),
             make_record(trial_id="ctl", depth=0.5, correct=True, control="closed_book")]
    df = pd.concat([df, pd.DataFrame(noise).assign(run_dir="runs/a")], ignore_index=True)
    row = position_indices(df).iloc[0]
    assert row["n"] == 90 and row["middle_accuracy"] == pytest.approx(0.4)


# ---------------------------------------------------------------------------- effective length


def length_grid(accuracies: dict[int, tuple[int, int]]) -> dict:
    """Same counts at depths 0 and 1 for each length: accuracy over depths is correct / n."""
    return {(length, depth): counts for length, counts in accuracies.items() for depth in (0.0, 1.0)}


# 1024: 90%, 2048: exactly 85.6% (107/125), 4096: 80%, 8192: 95% (a late recovery that must not count)
LENGTHS = {1024: (9, 10), 2048: (107, 125), 4096: (8, 10), 8192: (19, 20)}


@pytest.mark.parametrize(("threshold", "effective", "failing", "beyond"), [
    (0.856, 2048, 4096, False),  # at the threshold passes; 8192 passes again but 4096 broke the run
    (0.9, 1024, 2048, False),
    (0.95, None, 1024, False),  # even the shortest length fails
    (0.5, 8192, None, True),  # every tested length passes: at least 8192
])
def test_effective_context_length_with_threshold(threshold, effective, failing, beyond):
    row = effective_context_length(frame(length_grid(LENGTHS)), threshold).iloc[0]
    for column, expected in (("effective_length", effective), ("first_failing_length", failing)):
        assert pd.isna(row[column]) if expected is None else row[column] == expected
    assert bool(row["beyond_tested"]) is beyond and row["threshold"] == threshold
    assert (row["shortest_tested"], row["longest_tested"]) == (1024, 8192)


def test_effective_length_rejects_thresholds_outside_0_1():
    with pytest.raises(ValueError, match="did you mean 0.856"):
        effective_context_length(frame(GRID), 85.6)


@pytest.mark.parametrize(("text", "value"), [("0.856", 0.856), ("85.6%", 0.856), (" 90% ", 0.9), ("1", 1.0)])
def test_parse_threshold_accepts_fractions_and_percentages(text, value):
    assert parse_threshold(text) == pytest.approx(value)


@pytest.mark.parametrize(("text", "message"), [("90", "did you mean 90%"), ("abc", "not a number"),
                                              ("0", r"not in \(0, 1\]"), ("150%", "not in")])
def test_parse_threshold_refuses_ambiguous_or_bad_values(text, message):
    with pytest.raises(ValueError, match=message):
        parse_threshold(text)


# ---------------------------------------------------------------------------- variants


def test_variants_are_models_unless_a_model_spans_runs():
    two_models = add_variants(pd.concat([frame(GRID, "m1", "runs/a"), frame(GRID, "m2", "runs/b")]))
    assert variant_order(two_models) == ["m1", "m2"]
    same_model = add_variants(pd.concat([frame(GRID, "m1", "x/new"), frame(GRID, "m1", "x/old"),
                                         frame(GRID, "m2", "x/old")]))
    assert variant_order(same_model) == ["m1 · new", "m1 · old", "m2"]  # baseline = first run directory given
    layouts = add_variants(pd.concat([frame(GRID, "m1", "a", layout="needle-last"),
                                      frame(GRID, "m1", "b", layout="needle-first"),
                                      frame(GRID, "m1", "c", layout="needle-last")]))
    assert variant_order(layouts) == ["m1 · needle-last", "m1 · needle-first"]  # runs of one layout pool
    assert (layouts["variant"] == "m1 · needle-last").sum() == 2 * sum(n for _, n in GRID.values())


def test_run_labels_add_parents_only_on_a_clash():
    assert run_labels(["a/runs/x", "b/runs/x", "c/y"]) == {"a/runs/x": "a/runs/x", "b/runs/x": "b/runs/x", "c/y": "y"}
    assert run_labels(["p/q/x", "p/r/x"]) == {"p/q/x": "q/x", "p/r/x": "r/x"}


# ---------------------------------------------------------------------------- comparison


def two_runs() -> pd.DataFrame:
    """Same model in two runs; run b finds the middle at 2048 and tested one depth run a did not."""
    better = {**GRID, (2048, 0.5): (10, 10), (2048, 0.25): (1, 10)}
    return add_variants(pd.concat([frame(GRID, MODEL, "runs/a"), frame(better, MODEL, "runs/b")], ignore_index=True))


def test_comparison_table_differences_per_cell():
    table = comparison_table(two_runs())
    assert set(table["variant"]) == {f"{MODEL} · b"} and set(table["baseline"]) == {f"{MODEL} · a"}
    assert len(table) == len(GRID)  # (2048, 0.25) exists only in run b: not compared
    cell = table.set_index(["context_length", "depth"]).loc[(2048, 0.5)]
    assert (cell["accuracy"], cell["baseline_accuracy"], cell["difference"]) == pytest.approx((1.0, 0.4, 0.6))
    assert (cell["diff_low"], cell["diff_high"]) == pytest.approx(difference_interval(10, 10, 4, 10)[1:])
    same = table.set_index(["context_length", "depth"]).loc[(1024, 0.0)]
    assert same["difference"] == 0 and same["diff_low"] < 0 < same["diff_high"]


def test_length_comparison_pools_only_shared_depths():
    table = length_comparison(two_runs()).set_index("context_length")
    # 2048: b 10+10+9 of 30 vs a 10+4+9 of 30 (b's extra depth 0.25 is left out)
    assert (table.loc[2048, "n"], table.loc[2048, "baseline_n"]) == (30, 30)
    assert table.loc[2048, "difference"] == pytest.approx(29 / 30 - 23 / 30)
    assert (table.loc[2048, "diff_low"], table.loc[2048, "diff_high"]) == pytest.approx(
        difference_interval(29, 30, 23, 30)[1:])
    assert table.loc[1024, "difference"] == pytest.approx(0.0)


def test_length_comparison_interval_counts_samples_when_a_sample_fails_at_every_depth():
    # run a: samples 0-4 right at all three depths, 5-9 wrong at all three (15/30, design effect 3); run b: 30/30
    worse = {(1024, d): (5, 10) for d in (0.0, 0.5, 1.0)}
    best = {(1024, d): (10, 10) for d in (0.0, 0.5, 1.0)}
    df = add_variants(pd.concat([frame(worse, MODEL, "runs/a"), frame(best, MODEL, "runs/b")], ignore_index=True))
    row = length_comparison(df).iloc[0]
    assert (row["n"], row["baseline_n"], row["accuracy"], row["baseline_accuracy"]) == (30, 30, 1.0, 0.5)
    assert row["difference"] == pytest.approx(0.5)
    assert (row["diff_low"], row["diff_high"]) == pytest.approx(difference_interval(30, 30, 5, 10)[1:])
    assert row["diff_low"] < difference_interval(30, 30, 15, 30)[1]  # wider than 30 independent trials


def test_comparison_is_empty_with_one_variant_and_baseline_must_exist():
    assert comparison_table(frame(GRID)).empty
    with pytest.raises(ValueError, match="unknown baseline"):
        comparison_table(two_runs(), baseline="nope")


# ---------------------------------------------------------------------------- controls


def with_controls() -> pd.DataFrame:
    # one oracle and one closed-book trial per sample, as a run plans them
    controls = [make_record(trial_id=f"{kind}{i}", depth=0.0, correct=i < right, control=kind, sample=i)
                for kind, right in (("oracle", 19), ("closed_book", 1)) for i in range(20)]
    controls.append(make_record(trial_id="cb-skip", status="skipped", correct=False, control="closed_book"))
    return pd.concat([frame(GRID), pd.DataFrame(controls).assign(run_dir="runs/a")], ignore_index=True)


def test_control_rates_and_controls_kept_out_of_the_grid():
    df = with_controls()
    rates = control_rates(df).set_index("control")
    assert list(rates.index) == ["closed_book", "oracle"]
    assert (rates.loc["closed_book", "correct"], rates.loc["closed_book", "n"]) == (1, 20)
    assert rates.loc["closed_book", "skipped"] == 1 and rates.loc["oracle", "accuracy"] == pytest.approx(0.95)
    assert (rates.loc["oracle", "ci_low"], rates.loc["oracle", "ci_high"]) == pytest.approx(wilson_interval(19, 20))
    summary = summary_table(df)  # the control trials sit at (1024, 0.0) but must not count there
    cell = summary.set_index(["context_length", "depth"]).loc[(1024, 0.0)]
    assert (cell["n"], cell["correct"], cell["skipped"]) == (10, 10, 0)
    assert control_rates(frame(GRID)).empty


def test_control_rates_pooling_a_samples_lengths_count_samples():
    # closed-book at two lengths of 10 samples; samples 0-2 answer from memory at both lengths (6/20)
    closed = pd.DataFrame([make_record(trial_id=f"cb{s}-{n}", context_length=n, correct=s < 3, control="closed_book",
                                       sample=s) for s in range(10) for n in (1024, 2048)]).assign(run_dir="runs/a")
    row = control_rates(closed).iloc[0]
    assert (row["correct"], row["n"]) == (6, 20)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(3, 10))  # design effect 2: 10 samples


# ---------------------------------------------------------------------------- comparison charts


def test_comparison_charts_share_colours_and_show_the_numbers():
    df = two_runs()
    fig = new_figure(12, 4)
    by_length, by_depth, diff = fig.subplots(1, 3)
    plot_variants_by_length(df, by_length, threshold=0.9)
    a_line = next(line for line in by_length.lines if line.get_label() == f"{MODEL} · a")
    assert list(a_line.get_ydata()) == pytest.approx([29 / 30 * 100, 23 / 30 * 100])
    threshold = next(line for line in by_length.lines if line.get_label().startswith("threshold"))
    assert list(threshold.get_ydata()) == pytest.approx([90.0, 90.0])
    plot_variants_vs_depth(df, by_depth, 2048)
    b_depth = next(line for line in by_depth.lines if line.get_label() == f"{MODEL} · b")
    b_length = next(line for line in by_length.lines if line.get_label() == f"{MODEL} · b")
    assert b_depth.get_color() == b_length.get_color() != a_line.get_color()
    assert list(b_depth.get_ydata()) == pytest.approx([100.0, 10.0, 100.0, 90.0])
    plot_accuracy_difference(df, diff)
    assert {"+60*", "0"} <= {t.get_text() for t in diff.texts}  # (2048, 50%): +60 points, interval above 0
    assert diff.collections[0].get_clim() == (-100.0, 100.0)
    assert "points" in diff.collections[0].colorbar.ax.get_ylabel()

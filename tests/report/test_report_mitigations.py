"""The "Does a fix help?" section (evalkit/report/analysis/mitigations.py, document/mitigation_section.py) on
hand-built run directories: paired gains, McNemar p, the verdict, top-k vs random-k, the baseline elsewhere."""

from __future__ import annotations

import pandas as pd

from evalkit.report import write_report
from evalkit.report.analysis.mitigations import arm_comparisons, arm_trials, effect_detected
from evalkit.report.document.mitigation_section import verdict
from evalkit.report.analysis.recommend import mcnemar_exact
from evalkit.report.data.load import load_results
from report_fixtures import MODEL, make_record, write_header, write_records

DEPTHS = (0.0, 0.5, 1.0)
SAMPLES = 20
# arm -> depth -> how many of the 20 samples are right (the first ones); heads masked
ARMS = {
    "none": ({0.0: 18, 0.5: 6, 1.0: 18}, None),
    "reorder_by_relevance": ({0.0: 18, 0.5: 16, 1.0: 18}, None),
    "top4": ({0.0: 4, 0.5: 1, 1.0: 5}, [[3, 1], [5, 0], [7, 2], [9, 3]]),
    "random4": ({0.0: 18, 0.5: 6, 1.0: 18}, [[0, 2], [2, 1], [4, 0], [6, 3]]),
}


def _write_run(run_dir) -> None:
    write_header(run_dir)
    rows = []
    for arm, (right, heads) in ARMS.items():
        for depth in DEPTHS:
            for sample in range(SAMPLES):
                correct = sample < right[depth]
                rows.append(make_record(
                    trial_id=f"{arm}-{depth}-{sample}", depth=depth, achieved_depth=depth, sample=sample,
                    correct=correct, exact_match=correct, mitigation=arm,
                    extra={"masked_heads": heads} if heads else {}))
    write_records(run_dir, rows)


def test_each_arm_is_compared_with_the_baseline_on_the_same_trials(tmp_path):
    _write_run(tmp_path / "run")
    table = arm_comparisons(arm_trials(load_results(tmp_path / "run"))).set_index("arm")
    assert list(table.index) == ["reorder_by_relevance", "top4", "random4"]
    reorder = table.loc["reorder_by_relevance"]
    assert reorder["pairs"] == 60 and reorder["middle_pairs"] == 20
    assert reorder["middle_difference"] == 0.5 and reorder["middle_low"] > 0
    assert (reorder["arm_only"], reorder["baseline_only"]) == (10, 0)
    assert reorder["p_value"] == mcnemar_exact(10, 0) and reorder["middle_p_value"] == mcnemar_exact(10, 0)
    assert reorder["ends_difference"] == 0 and reorder["ends_low"] == reorder["ends_high"] == 0
    random = table.loc["random4"]
    assert random["difference"] == 0 and random["p_value"] == 1.0 and random["masked_heads"] == "0.2 2.1 4.0 6.3"
    assert table.loc["top4", "difference"] == (4 + 1 + 5 - 42) / 60 and table.loc["top4", "diff_high"] < 0


def test_the_report_shows_the_section_with_verdicts_and_keeps_the_rest_to_the_baseline(tmp_path):
    _write_run(tmp_path / "run")
    paths = write_report(tmp_path / "run", tmp_path / "report")
    text = paths.report_md.read_text()
    assert "## Does a fix help?" in text
    assert "reorder_by_relevance recovers 50 pts in the middle band (95% CI +30 to +70, McNemar p = 0.002)" in text
    assert "costs nothing detectable at the ends" in text
    assert "random4: no decided effect with 60 paired trials." in text
    assert "top-k vs random-k" in text and "top4 (heads 3.1 5.0 7.2 9.3)" in text
    assert (tmp_path / "report" / "mitigations.csv") in paths.tables
    assert any(p.name.startswith("mitigations_") and p.suffix == ".png" for p in paths.charts)
    # the other sections count the baseline's trials only (20 per depth, not 80)
    summary = pd.read_csv(paths.summary_csv)
    assert summary["n"].tolist() == [SAMPLES] * len(DEPTHS)
    assert summary.loc[summary["depth"] == 0.5, "accuracy"].item() == 6 / SAMPLES


def test_a_run_without_arms_has_no_such_section(tmp_path):
    write_header(tmp_path / "run")
    write_records(tmp_path / "run", [make_record(trial_id=f"t{i}", sample=i, model=MODEL) for i in range(3)])
    paths = write_report(tmp_path / "run", tmp_path / "report")
    assert "Does a fix help?" not in paths.report_md.read_text()
    assert not (tmp_path / "report" / "mitigations.csv").exists()


def test_the_overall_gain_interval_resamples_samples_not_pairs():
    # the arm rescues samples 0-1 at all three depths and changes nothing else: 6 of 60 pairs, but two samples
    rows = []
    for arm in ("none", "reorder_by_relevance"):
        for depth in DEPTHS:
            for sample in range(SAMPLES):
                rescued = arm != "none" and sample < 2
                rows.append(dict(model=MODEL, task="passkey", layout="", context_length=1024, depth=depth,
                                 sample=sample, seed=100 + sample, mitigation=arm,
                                 _correct=int(rescued or 4 <= sample < 14)))
    trials = pd.DataFrame(rows)
    row = arm_comparisons(trials.assign(extra=[{}] * len(trials), extra_forwards=0, extra_prompt_tokens=0)).iloc[0]
    assert row["pairs"] == 60 and row["difference"] == 0.1 and row["arm_only"] == 6
    # resampling 20 samples (two of them rescued at every depth) can draw none of the two: the interval reaches 0;
    # resampling the 60 pairs as if independent would rarely draw none of the six
    assert row["diff_low"] == 0.0 and row["diff_high"] > 0.2


def _four_of_ten_rescued() -> pd.Series:
    """As in the mitigations example: 10 samples, one depth per band, the arm rescues 4 middle pairs."""
    rows = []
    for arm in ("none", "calibrate_attention"):
        for depth in DEPTHS:
            for sample in range(10):
                rescued = arm != "none" and depth == 0.5 and sample < 4
                rows.append(dict(model=MODEL, task="passkey", layout="", context_length=1024, depth=depth,
                                 sample=sample, seed=100 + sample, mitigation=arm,
                                 _correct=int(rescued or sample >= 8)))
    trials = pd.DataFrame(rows)
    return arm_comparisons(trials.assign(extra=[{}] * len(trials), extra_forwards=0, extra_prompt_tokens=0)).iloc[0]


def test_an_interval_off_zero_that_mcnemar_does_not_confirm_is_not_an_effect():
    row = _four_of_ten_rescued()
    # four discordant pairs, all one way: a resample of the 10 samples misses all four 0.6% of the time ...
    assert row["middle_low"] > 0 and row["middle_difference"] == 0.4
    # ... but McNemar's exact p on 4 vs 0 is 0.125: not decided
    assert row["middle_p_value"] == mcnemar_exact(4, 0) == 0.125
    assert not effect_detected(row["middle_low"], row["middle_high"], row["middle_p_value"])
    sentence = verdict(row)
    assert sentence.startswith("calibrate_attention: no decided effect with 30 paired trials")
    assert "excludes 0 but McNemar p = 0.12" in sentence and "recovers" not in sentence


def test_an_effect_needs_both_the_interval_and_mcnemar():
    assert effect_detected(0.1, 0.5, 0.01)
    assert not effect_detected(0.1, 0.5, 0.06)
    assert not effect_detected(-0.1, 0.5, 0.001)
    assert not effect_detected(float("nan"), 0.5, 0.001) and not effect_detected(0.1, 0.5, float("nan"))

"""Layout recommendation: paired statistics against hand-computed cases, reliable bands, the report section."""

from __future__ import annotations

import pytest
from report_fixtures import make_record, write_header, write_records

from evalkit.report import load_results, write_report
from evalkit.report.analysis.recommend import (
    band_reliability,
    layout_pairs,
    layout_trials,
    mcnemar_exact,
    paired_bootstrap,
    trials_for_reliable_band,
)


def test_mcnemar_exact_matches_hand_computed_binomial_tails():
    assert mcnemar_exact(1, 6) == pytest.approx(2 * (1 + 7) / 2**7)  # 0.125
    assert mcnemar_exact(0, 5) == pytest.approx(2 / 2**5)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(0, 0) == 1.0


def test_paired_bootstrap_difference_and_interval():
    a, b = [1, 1, 1, 0] * 10, [0, 0, 1, 0] * 10
    diff, low, high = paired_bootstrap(a, b)
    assert diff == pytest.approx(0.5) and 0.3 < low < 0.5 < high < 0.7
    assert paired_bootstrap([1, 0, 1], [1, 0, 1]) == (0.0, 0.0, 0.0)  # no discordant pair: no uncertainty
    with pytest.raises(ValueError, match="equally long"):
        paired_bootstrap([1], [1, 0])


def test_paired_bootstrap_over_clusters_counts_samples_not_pairs():
    # 10 samples x 4 depths: the best layout wins all four depths of samples 0-1 and ties elsewhere
    a, b = [1] * 40, [0] * 8 + [1] * 32
    samples = [i // 4 for i in range(40)]
    diff, low, high = paired_bootstrap(a, b, clusters=samples)
    naive = paired_bootstrap(a, b)
    assert diff == naive[0] == pytest.approx(0.2)
    assert low <= 0.0 < naive[1] and high > naive[2]  # two samples' worth of evidence, not eight pairs
    # one pair per sample: the same interval as over pairs
    assert paired_bootstrap(a, b, clusters=range(40)) == naive


def _records(outcomes: dict[str, list[bool]], depths=(0.0, 0.5, 1.0), controls=True) -> list[dict]:
    """Each question position's outcomes per (depth, sample), same cells for every layout (paired)."""
    rows = []
    for position, results in outcomes.items():
        for i, correct in enumerate(results):
            depth, sample = depths[i % len(depths)], i // len(depths)
            rows.append(make_record(trial_id=f"{position}-{i}", depth=depth, sample=sample, correct=correct,
                                    question_position=position))
        if controls:
            for control, right in (("closed_book", False), ("oracle", True)):
                rows.append(make_record(trial_id=f"{position}-{control}", correct=right, depth=float("nan"),
                                        question_position=position, control=control))
    return rows


def _layout_header(run_dir) -> None:
    """A header whose config varies the question position (so records are labelled "question after", ...)."""
    write_header(run_dir, config={"models": ["m"], "tasks": ["passkey"], "layout": {"question_position": ["after", "both"]}})


def test_pairs_compare_every_layout_with_the_best_on_shared_trials(tmp_path):
    good = [True] * 30
    worse = [i % 5 != 0 for i in range(30)]  # 6 of 30 wrong, all where "good" was right
    _layout_header(tmp_path)
    write_records(tmp_path, _records({"after": worse, "both": good}))
    pairs = layout_pairs(layout_trials(load_results(tmp_path)))
    row = pairs.iloc[0]
    assert (row.best, row.layout, row.pairs, row.best_only, row.layout_only) == ("question both", "question after", 30, 6, 0)
    assert row.p_value == pytest.approx(2 / 2**6) and row.difference == pytest.approx(0.2)
    assert 0 < row.diff_low < 0.2 < row.diff_high


def test_reliable_band_needs_95_percent_and_a_lower_bound_of_90():
    assert trials_for_reliable_band() == 35
    import pandas as pd

    frame = pd.DataFrame({"model": "m", "layout": "l", "task": "t", "depth": [0.0] * 35 + [0.5] * 34 + [1.0] * 40,
                          "_correct": [1] * 35 + [1] * 34 + [1] * 37 + [0] * 3})
    bands = band_reliability(frame).set_index("band")
    assert bands.loc["start", "reliable"] and not bands.loc["middle", "reliable"]  # 34/34: lower bound 89.8%
    assert not bands.loc["end", "reliable"]  # 37/40 = 92.5% < 95%


def test_report_states_the_layout_to_use_with_intervals_and_controls(tmp_path):
    run = tmp_path / "run"
    _layout_header(run)
    write_records(run, _records({"after": [i % 3 != 1 for i in range(30)], "both": [True] * 30}))
    text = (write_report([run], tmp_path / "report").report_md).read_text()
    section = text.split("## Layout recommendation")[1].split("\n## ")[0]
    assert "Use: question both." in section and "McNemar p = 0.002" in section  # 10 discordant: 2/2**10
    assert "95% CI" in section and "closed book 0% (n=1), oracle 100% (n=1)" in section
    assert "no band is reliable" in section and "35 are needed" in section
    assert "every band scored 100% (n=10 in the smallest)" in section  # bands of the recommended layout
    assert "the filler costs 0 pts" in section  # oracle 100%, best layout 100%

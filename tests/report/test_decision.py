"""The decision block's numbers on synthetic records with a known answer (evalkit/report/analysis/decision.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_fixtures import grid_records, make_record, write_header, write_records

from evalkit.report import write_report
from evalkit.report.analysis.compare import control_rates
from evalkit.report.analysis.stats import wilson_interval
from evalkit.report.analysis.decision import (
    DANGER,
    SAFE,
    UNSURE,
    model_decisions,
    trials_needed,
    trials_to_call_safe,
    verdict_of,
)
from evalkit.report.data.labels import add_variants
from evalkit.report.analysis.decision import depth_cells, depth_runs

DEPTHS = tuple(i / 10 for i in range(11))


def _middle_failing_grid(samples: int = 20) -> dict:
    """Every depth right except 30-60%, at two lengths: 0 of ``samples`` there, all right elsewhere."""
    return {(length, d): (0 if 0.3 - 1e-9 <= d <= 0.6 + 1e-9 else samples, samples)
            for length in (1024, 4096) for d in DEPTHS}


def test_a_model_failing_only_between_30_and_60_percent_gets_that_band_as_danger():
    df = add_variants(pd.DataFrame(grid_records(grid=_middle_failing_grid())))
    (decision,) = model_decisions(df, control_rates(df))
    for verdict in decision.lengths:
        assert [(r.depth_low, r.depth_high) for r in verdict.danger] == [(0.3, 0.6)]
        assert [(r.depth_low, r.depth_high) for r in verdict.safe] == [(0.0, 0.2), (0.7, 1.0)]
        (danger,) = verdict.danger
        assert danger.n == 80 and danger.correct == 0 and danger.ci_high < 0.05
    assert decision.question is None  # every gap is decided with 20 trials per depth


def test_the_block_in_report_md_names_the_danger_band_and_stays_on_one_screen(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, grid_records(grid=_middle_failing_grid()))
    text = write_report([run], tmp_path / "out").report_md.read_text(encoding="utf-8")
    block = text.split("**Decision.**")[1].split("\nTables: ")[0]
    # brackets are escaped in Markdown (no text from a record can start a link); they render as written
    assert r"- **4,096 tokens:** safe 0–20% (100% \[94–100\], n=60), 70–100% (100% \[95–100\], n=80) · danger " \
           r"30–60% (0% \[0–5\], n=80)" in block
    assert "![Where is it safe: org/tiny-model](safety_org-tiny-model.png)" in block
    assert len([line for line in block.splitlines() if line.strip()]) <= 12
    assert text.index("**Decision.**") < text.index("## Summary per variant") < text.index("## Runs")


LAYOUT_GRID = {"models": ["org/tiny-model"], "tasks": ["passkey"], "layout": {"question_position": ["before", "after"]}}


def _layout_records(better: list[bool], worse: list[bool], per_sample: int = 1) -> list[dict]:
    """Paired trials of two layouts (same depth and sample), plus closed-book and oracle controls.

    ``per_sample`` consecutive outcomes share a sample (its needle) at successive depths.

    Each record carries its layout axis (``question_position``) and the label ``load_results`` derives from it
    under ``LAYOUT_GRID`` (``layout``), so the same records serve a DataFrame and a run directory.
    """
    records = []
    for position, outcomes in (("before", better), ("after", worse)):
        label = f"question {position}"
        for i, right in enumerate(outcomes):
            depth = DEPTHS[i % len(DEPTHS)]
            records.append({**make_record(trial_id=f"{position}-{i}", depth=depth, achieved_depth=depth,
                                          sample=i // per_sample,
                                          correct=right, question_position=position), "layout": label})
        for control, right in (("closed_book", False), ("oracle", True)):
            records.append({**make_record(trial_id=f"{position}-{control}", correct=right, control=control,
                                          question_position=position), "layout": label})
    return records


def test_a_layout_better_by_a_known_margin_is_recommended_with_the_right_sign():
    n = 110
    better = [True] * n
    worse = [i % 5 != 0 for i in range(n)]  # 20% wrong: the first layout is better by exactly 20 points
    df = add_variants(pd.DataFrame(_layout_records(better, worse)))
    (decision,) = model_decisions(df, control_rates(df))
    choice = decision.layout
    assert choice.layout == "question before" and choice.runner_up == "question after"
    assert choice.gain == pytest.approx(0.2) and 0 < choice.gain_low < 0.2 < choice.gain_high
    assert choice.pairs == n and choice.p_value < 1e-5
    assert decision.variant == "org/tiny-model · question before"
    assert set(decision.controls["control"]) == {"closed_book", "oracle"}


def test_a_layout_gap_inside_noise_is_the_open_question_with_a_power_estimate(tmp_path):
    better = [i % 10 != 0 for i in range(20)]  # 90%
    worse = [i % 10 not in (0, 1) for i in range(20)]  # 80%: paired gap +10 pts, interval includes 0
    df = add_variants(pd.DataFrame(_layout_records(better, worse)))
    (decision,) = model_decisions(df, control_rates(df))
    question = decision.question
    assert question.what == "layout question before vs question after" and question.gap == pytest.approx(0.1)
    assert question.low <= 0 <= question.high and question.n_now == 20
    # Cohen's h 0.2838; n = 2 * ((1.96 + 0.8416) / h)^2 per arm at 80% power, alpha 0.05
    assert question.n_needed == trials_needed(0.9, 0.8) == 195
    run = tmp_path / "run"
    write_header(run, config=LAYOUT_GRID)
    write_records(run, [{k: v for k, v in r.items() if k != "layout"} for r in _layout_records(better, worse)])
    text = write_report([run], tmp_path / "out").report_md.read_text(encoding="utf-8")
    assert (r"- **Layout:** use `question before` 90% \[70–97\] (n=20); +10 pts \[0, +25\] over `question after` on "
            "20 paired trials, McNemar p = 0.5") in text
    assert "- **1,024 tokens:** safe none · danger none" in text  # one or two trials per depth: all amber
    assert "about 195 trials per arm (now 20) would detect a gap this size with 80% power" in text
    assert r"- **Controls:** closed book 0% \[0–79\] (n=1); oracle 100% \[21–100\] (n=1)" in text


def test_verdicts_follow_the_interval():
    assert verdict_of(*wilson_interval(9, 9)) == SAFE and verdict_of(*wilson_interval(8, 8)) == UNSURE
    assert verdict_of(*wilson_interval(0, 2)) == DANGER and verdict_of(*wilson_interval(0, 1)) == UNSURE
    assert verdict_of(*wilson_interval(10, 20)) == DANGER and verdict_of(*wilson_interval(13, 20)) == UNSURE
    assert trials_to_call_safe(1.0) == 9  # 9/9: Wilson lower bound 0.701; 8/8 gives 0.676
    assert trials_to_call_safe(0.7) is None and trials_needed(0.5, 0.5) is None


def test_a_band_pooling_a_samples_depths_gets_the_cluster_interval():
    # 10 samples x 4 danger depths: samples 0-1 right everywhere, 2-9 wrong everywhere (8/40, one value per sample)
    trials = pd.DataFrame([dict(task="t", sample=s, seed=100 + s, depth=d, _correct=int(s < 2))
                           for s in range(10) for d in (0.25, 0.5, 0.75, 1.0)])
    cells = depth_cells(trials)
    assert all(c.verdict == "danger" for c in cells) and cells[0].n == 10  # per cell: 10 trials, Wilson as before
    assert (cells[0].ci_low, cells[0].ci_high) == pytest.approx(wilson_interval(2, 10))
    (naive,), (clustered,) = depth_runs(cells, "danger"), depth_runs(cells, "danger", trials)
    assert (naive.n, naive.correct) == (clustered.n, clustered.correct) == (40, 8)
    assert (naive.ci_low, naive.ci_high) == pytest.approx(wilson_interval(8, 40))
    # design effect 4 (each sample agrees with itself at its 4 depths): Wilson of 2 right in 10
    assert (clustered.ci_low, clustered.ci_high) == pytest.approx(wilson_interval(2, 10))
    assert clustered.ci_high - clustered.ci_low > naive.ci_high - naive.ci_low


def test_the_power_estimate_counts_samples_when_a_layouts_trials_share_needles():
    # 10 samples at the 11 depths: sample 0 missed everywhere under one layout (90%), samples 0-1 under the other (80%)
    better = [i // 11 != 0 for i in range(110)]
    worse = [i // 11 not in (0, 1) for i in range(110)]
    df = add_variants(pd.DataFrame(_layout_records(better, worse, per_sample=len(DEPTHS))))
    (decision,) = model_decisions(df, control_rates(df))
    question = decision.question
    assert question.gap == pytest.approx(0.1) and question.low <= 0 <= question.high
    # each sample's 11 trials agree: design effect 11, so 11 times the trials of independent ones
    assert decision.layout.design_effect == pytest.approx(11.0)
    assert question.n_needed == 11 * trials_needed(0.9, 0.8) == 2145


@pytest.mark.parametrize("name, grid, expected", [
    ("decided", _middle_failing_grid(), "each length's best-vs-worst position gap is decided at 95%"),
    ("floor", {(length, d): (0, 20) for length in (1024, 4096) for d in DEPTHS},
     "every tested depth has the same accuracy at each length, so there is no position gap to decide"),
])
def test_not_known_yet_says_whether_the_position_gap_is_decided_or_absent(tmp_path, name, grid, expected):
    """A floor (0% everywhere) has no gap at all: the block must not call it "decided at 95%"."""
    run = tmp_path / "run"
    write_header(run)
    write_records(run, grid_records(grid=grid))
    text = write_report([run], tmp_path / "out").report_md.read_text(encoding="utf-8")
    (line,) = [line for line in text.splitlines() if line.startswith("- **Not known yet:**")]
    assert expected in line
    assert "every comparison shown" not in line

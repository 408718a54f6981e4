"""Paired comparisons per content axis and accuracy against similarity (evalkit/report/analysis/content_axes.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from report_fixtures import make_record, write_header, write_records

from evalkit.report import write_report
from evalkit.report.analysis.content_axes import axis_pairs, similarity_table
from evalkit.report.analysis.recommend import layout_pairs, layout_trials, paired_bootstrap
from evalkit.report.data.labels import add_variants
from evalkit.report.document.content_section import graded_similarity

KEYS = [(depth, sample) for depth in (0.25, 0.5) for sample in range(10)]  # 20 pair keys per cell of the axes
# under the coherent haystack, with 0 vs 4 look-alikes: 10 both right, 7 only without, 1 only with, 2 neither
COHERENT = [(1, 1)] * 10 + [(1, 0)] * 7 + [(0, 1)] * 1 + [(0, 0)] * 2


def _paired_records() -> list[dict]:
    """A 2 x 2 design (distractor_count 0/4 x haystack coherent/shuffled); shuffled trials are all right."""
    records = []
    for (depth, sample), (without, with_) in zip(KEYS, COHERENT):
        for count in (0, 4):
            for order in ("coherent", "shuffled"):
                right = bool(without if count == 0 else with_) if order == "coherent" else True
                records.append(make_record(trial_id=f"{depth}|{sample}|{count}|{order}", depth=depth, sample=sample,
                                           seed=50 + sample, correct=right, distractor_count=count,
                                           haystack_order=order))
    return records


def _frame(records: list[dict]) -> pd.DataFrame:
    return add_variants(pd.DataFrame(records))


def test_distractor_pairs_match_every_other_axis_and_give_mcnemar_and_discordant_counts():
    pairs = axis_pairs(_frame(_paired_records())).set_index("axis")
    row = pairs.loc["distractor_count"]
    assert (row["baseline"], row["value"], row["pairs"]) == ("0 distractors", "4 distractors", 40)
    assert (row["baseline_only"], row["value_only"]) == (7, 1)
    assert row["p_value"] == pytest.approx(2 * (1 + 8) / 2**8)  # exact binomial on 8 discordant pairs
    assert (row["baseline_accuracy"], row["accuracy"]) == pytest.approx((37 / 40, 31 / 40))
    assert row["difference"] == pytest.approx(-6 / 40)
    assert row["diff_low"] < row["difference"] < row["diff_high"] <= 0.0


def test_haystack_order_is_paired_within_each_distractor_count():
    row = axis_pairs(_frame(_paired_records())).set_index("axis").loc["haystack_order"]
    assert (row["baseline"], row["value"], row["pairs"]) == ("coherent haystack", "shuffled haystack", 40)
    assert (row["baseline_only"], row["value_only"]) == (0, 12)  # 3 misses at 0 look-alikes, 9 at 4
    assert row["p_value"] == pytest.approx(2 * 0.5**12)


def test_the_interval_is_the_paired_bootstrap_over_samples():
    records = [r for r in _paired_records() if r["haystack_order"] == "coherent"]
    row = axis_pairs(_frame(records)).iloc[0]
    x = [r["correct"] for r in records if r["distractor_count"] == 0]
    y = [r["correct"] for r in records if r["distractor_count"] == 4]
    clusters = [f"passkey\x1f{r['sample']}\x1f{r['seed']}" for r in records if r["distractor_count"] == 0]
    expected = paired_bootstrap(y, x, clusters=clusters)  # value minus baseline, resampling samples
    assert (row["difference"], row["diff_low"], row["diff_high"]) == pytest.approx(expected)
    assert row["pairs"] == 20 and (row["baseline_only"], row["value_only"]) == (7, 1)


def test_needle_variants_are_compared_with_the_most_similar_one():
    records = []
    for sample in range(12):
        for variant, overlap, right in (("low", 0.1, sample < 4), ("high", 0.9, True)):
            records.append(make_record(trial_id=f"{sample}|{variant}", sample=sample, seed=sample, correct=right,
                                       needle_variant=variant, question_overlap=overlap, question_bm25=overlap * 5))
    row = axis_pairs(_frame(records)).iloc[0]
    assert (row["axis"], row["baseline"], row["value"], row["value_only"], row["baseline_only"]) == \
           ("needle_variant", "needle high", "needle low", 0, 8)
    table = similarity_table(_frame(records)).set_index("similarity")
    assert table.loc["low", "accuracy"] == pytest.approx(4 / 12) and table.loc["high", "accuracy"] == 1.0
    assert table.loc["low", "bm25"] == pytest.approx(0.5) and table.loc["high", "n"] == 12


def test_records_without_content_axes_give_no_comparison():
    frame = _frame([make_record(trial_id=f"t{i}", sample=i) for i in range(4)])
    assert axis_pairs(frame).empty and similarity_table(frame).empty


def test_the_report_shows_the_comparison_table(tmp_path):
    run = tmp_path / "run"
    write_header(run, config={"models": ["org/tiny-model"], "tasks": ["passkey"],
                              "layout": {"distractor_count": [0, 4], "haystack_order": ["coherent", "shuffled"]}})
    write_records(run, _paired_records())
    paths = write_report([run], tmp_path / "out")
    text = paths.report_md.read_text("utf-8")
    assert "## Does the content change it? Paired comparisons" in text
    row = next(line for line in text.splitlines() if line.startswith("| ") and "4 distractors vs 0 distractors" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[:5] == ["org/tiny-model", "4 distractors vs 0 distractors", "40", "78%", "92%"]
    assert cells[6:9] == ["1 / 7", "0.07", "not decided (McNemar p ≥ 0.05)"]
    shuffled = next(line for line in text.splitlines() if line.startswith("| ") and "shuffled haystack vs" in line)
    assert shuffled.rstrip(" |").endswith("decided: more found")
    assert (paths.out_dir / "content_pairs.csv").is_file()
    decision = text.split("**Decision.**")[1].split("\nTables: ")[0]
    line = next(line for line in decision.splitlines() if "**Content (paired trials):**" in line)
    assert "4 distractors vs 0 distractors −15 pts \\[" in line and "McNemar p = 0.07 (not decided)" in line
    assert "shuffled haystack vs coherent haystack +30 pts \\[" in line and "McNemar p = 0.00049." in line


def test_similarity_is_shown_only_for_models_whose_trials_span_several_bins():
    records = [make_record(trial_id=f"{model}|{i}", model=model, sample=i, seed=i, correct=True,
                           question_overlap=overlap, question_bm25=1.0)
               for model, overlaps in (("org/one-bin", (0.9, 0.95)), ("org/graded", (0.1, 0.9)))
               for i, overlap in enumerate(overlaps)]
    table = similarity_table(_frame(records))
    assert set(table["model"]) == {"org/one-bin", "org/graded"}
    assert set(graded_similarity(table)["model"]) == {"org/graded"}


def test_content_axes_are_never_recommended_as_a_layout(tmp_path):
    run = tmp_path / "run"
    write_header(run, config={"models": ["org/tiny-model"], "tasks": ["passkey"],
                              "layout": {"distractor_count": [0, 4], "haystack_order": ["coherent", "shuffled"]}})
    write_records(run, _paired_records())
    text = write_report([run], tmp_path / "out").report_md.read_text("utf-8")
    assert "## Layout recommendation" not in text and "**Layout:**" not in text
    assert "### org/tiny-model (shown: org/tiny-model · 4 distractors, coherent haystack, the hardest condition tested)" in text


def test_prompt_layouts_are_compared_on_pairs_within_each_content_condition():
    records = []
    for (depth, sample), (without, with_) in zip(KEYS, COHERENT):
        for count in (0, 4):
            for position in ("after", "before"):  # "before" loses every trial the look-alikes cost
                right = bool(without if count == 0 else with_) and (position == "after" or count == 0)
                records.append(make_record(trial_id=f"{depth}|{sample}|{count}|{position}", depth=depth,
                                           sample=sample, seed=50 + sample, correct=right, distractor_count=count,
                                           question_position=position))
    frame = _frame(records)
    frame["layout"] = ["x"] * len(frame)  # any non-empty full label: the prompt label is what counts
    (row,) = layout_pairs(layout_trials(frame)).itertuples(index=False)
    assert (row.best, row.layout, row.pairs) == ("question after", "question before", 40)
    assert (row.best_only, row.layout_only) == (11, 0)  # the 11 trials right with 4 look-alikes, question after

"""Attention report: AUROC and intervals by hand, tables from hand-built arrays, sections in report.md/html."""

from __future__ import annotations

import numpy as np
import pytest
from report_fixtures import make_record, write_header, write_records

from evalkit.attention import PARTITION
from evalkit.store.format import save_trial_attention
from evalkit.types import TrialAttention
from evalkit.report import write_report
from evalkit.report.analysis.attention import (
    attention_data,
    auroc,
    auroc_columns,
    head_table,
    mean_interval,
    prediction_table,
    top_heads,
)
from evalkit.report.data.load import load_results

LAYERS, HEADS, BINS = 2, 3, 4
SIGNAL = (1, 2)  # the head whose needle mass carries each trial's value
COPIER = (0, 1)  # the head whose strongest key is the needle token being generated
# (trial_id, context_length, correct, needle mass of SIGNAL)
TRIALS = [("a1", 1024, True, 0.3), ("a2", 1024, True, 0.2), ("a3", 1024, False, 0.25), ("a4", 1024, False, 0.1),
          ("b1", 2048, True, 0.4), ("b2", 2048, True, 0.35)]


def test_auroc_is_the_mann_whitney_statistic_by_hand():
    # pairs (correct, wrong): 0.9>0.5, 0.9>0.3, 0.8>0.5, 0.8>0.3, 0.4<0.5, 0.4>0.3 -> 5 of 6
    assert auroc([0.9, 0.8, 0.4, 0.5, 0.3], [True, True, True, False, False]) == pytest.approx(5 / 6)
    # a tie counts one half: 0.5 vs 0.5 -> 0.5, 0.5 > 0.2 -> 1; (0.5 + 1) / 2
    assert auroc([0.5, 0.5, 0.2], [True, False, False]) == pytest.approx(0.75)
    assert auroc([0.1, 0.2], [False, True]) == 1.0 and auroc([0.1, 0.2], [True, False]) == 0.0
    assert np.isnan(auroc([0.1, 0.2], [True, True]))  # one class empty
    scores = np.array([[0.9, 1.0], [0.8, 1.0], [0.4, 1.0], [0.5, 1.0], [0.3, 1.0]])
    np.testing.assert_allclose(auroc_columns(scores, [True, True, True, False, False]), [5 / 6, 0.5])


def test_chance_auroc_by_hand():
    from evalkit.report.analysis.attention import chance_auroc, mann_whitney_counts

    # n1 = n0 = 4: C(8, 4) = 70 orderings; U = 16 once, 15 once, 14 twice (partitions of 2: "2", "1+1"), so
    # P(U >= 15) = 2/70 = 0.029 <= 5% < P(U >= 14) = 4/70 = 0.057: the 5% chance level is AUROC 15/16
    assert mann_whitney_counts(4, 4)[-3:] == [2, 1, 1] and sum(mann_whitney_counts(4, 4)) == 70
    assert chance_auroc(4, 4, 1) == pytest.approx(15 / 16)
    # n1 = 3, n0 = 2: a perfect AUROC has probability 1 / C(5, 2) = 10% > 5%: chance reaches 1.0 (never above)
    assert mann_whitney_counts(3, 2) == [1, 1, 2, 2, 2, 1, 1]
    assert chance_auroc(3, 2, 1) == 1.0 and chance_auroc(3, 2, 100) == 1.0 and np.isnan(chance_auroc(3, 0, 10))
    # 4 correct, 2 wrong, 6 heads: the old normal formula said 0.5 + 2.394 * sqrt(7 / 96) = 1.15 (impossible)
    assert chance_auroc(4, 2, 6) == 1.0
    # large samples: normal approximation, one test at 5%: z = 1.6449, spread sqrt(111 / (12 * 60 * 50))
    assert chance_auroc(60, 50, 1) == pytest.approx(0.5 + 1.644854 * np.sqrt(111 / 36000), abs=1e-6)
    for n1, n0, tests in [(1, 1, 1), (2, 30, 5), (10, 10, 1000), (50, 50, 10), (100, 3, 1), (200, 200, 10**6)]:
        assert 0.5 <= chance_auroc(n1, n0, tests) <= 1.0


def test_mean_interval_is_the_t_interval_by_hand():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])  # sd 1, t(2) = 4.303
    assert mean == 2.0 and high - mean == pytest.approx(4.303 / np.sqrt(3), abs=1e-9) and low == 4 - high
    assert np.isnan(mean_interval([5.0])[1]) and mean_interval([5.0])[0] == 5.0


def _arrays(needle_mass: float) -> TrialAttention:
    names = PARTITION + tuple(f"bin_{i:02d}" for i in range(BINS))
    spans = [(0, 1), (1, 10), (10, 500), (500, 510), (510, 1000), (1000, 1024), (1024, 1025),
             (10, 258), (258, 505), (505, 752), (752, 1000)]
    mass = np.zeros((LAYERS, HEADS, 2, len(names)), dtype=np.float32)
    mass[..., 3] = 0.05
    mass[SIGNAL[0], SIGNAL[1], :, 3] = needle_mass
    mass[..., 0] = 0.5  # sink
    mass[..., 5] = 0.5 - mass[..., 3]  # question: the partition sums to 1
    mass[..., 8] = mass[..., 3]  # the needle's bin
    mass[:, :, 1] = np.nan  # the decode row was never reached
    argmax = np.zeros((LAYERS, HEADS, 2), dtype=np.int64)
    argmax_token = np.ones_like(argmax)
    argmax[COPIER[0], COPIER[1], 0], argmax_token[COPIER[0], COPIER[1], 0] = 505, 7
    return TrialAttention(mass=mass, remainder=1.0 - mass[..., :7].sum(-1), argmax_position=argmax,
                          argmax_token=argmax_token, row_token=np.array([7, -1]), row_in_needle=np.array([True, False]),
                          region_names=names, spans=np.array(spans), bins=BINS, prompt_tokens=1024)


@pytest.fixture()
def attention_run(tmp_path):
    run_dir = tmp_path / "run"
    write_header(run_dir)
    records = [make_record(trial_id=tid, context_length=length, correct=correct, depth=0.5, sample=i)
               for i, (tid, length, correct, _) in enumerate(TRIALS)]
    write_records(run_dir, records)
    for tid, _, _, value in TRIALS:
        save_trial_attention(run_dir, tid, _arrays(value))
    return run_dir


def test_tables_from_hand_built_arrays(attention_run):
    data = attention_data(load_results(attention_run))
    prediction = prediction_table(data).set_index("context_length")
    # 1024: correct trials carry 0.3 and 0.2, wrong ones 0.25 and 0.1 -> 3 of 4 pairs ordered right
    assert prediction.loc["1024", "auroc"] == pytest.approx(0.75)
    assert (prediction.loc["1024", "n_correct"], prediction.loc["1024", "n_wrong"]) == (2, 2)
    assert np.isnan(prediction.loc["2048", "auroc"]) and prediction.loc["2048", "n_wrong"] == 0
    heads = head_table(data).set_index(["layer", "head"])
    # all six trials: 0.4, 0.35, 0.3, 0.2 vs 0.25, 0.1 -> 8 pairs, only 0.2 < 0.25 is ordered wrong: 7 / 8
    assert heads.loc[SIGNAL, "auroc"] == pytest.approx(7 / 8)
    assert heads.loc[(0, 0), "auroc"] == 0.5  # constant mass: all ties
    assert heads.loc[COPIER, "retrieval_score"] == 1.0 and heads.loc[(0, 0), "retrieval_score"] == 0.0
    assert (heads["eligible_rows"] == len(TRIALS)).all()  # one eligible (prefill) row per trial
    top = top_heads(head_table(data), "auroc")
    assert len(top) == TOP and tuple(top.iloc[0][["layer", "head"]]) == SIGNAL


TOP = LAYERS * HEADS  # fewer heads than 10: every head is listed


def test_report_has_the_attention_section_charts_and_tables(attention_run, tmp_path):
    paths = write_report(attention_run, tmp_path / "report")
    markdown = paths.report_md.read_text()
    html = paths.report_html.read_text()
    assert "## Attention inside the model" in markdown
    for stem in ("attention_needle_mass", "attention_layers", "attention_bins", "attention_heads"):
        png, svg = (tmp_path / "report" / f"{stem}_org-tiny-model_passkey{s}" for s in (".png", ".svg"))
        assert png.is_file() and svg.is_file() and png in paths.charts
        assert f"]({png.name})" in markdown and png.name in html
    assert html.count("data:image/png;base64,") >= 6  # accuracy charts + four attention charts embedded
    compact = [line.replace(" ", "") for line in markdown.splitlines()]
    assert "|1,024|2|2|0.75|8.33%|7.08%|" in compact  # n correct, n wrong, AUROC, mean needle mass of each
    assert "|2,048|2|0|n/a|10.42%|–|" in compact  # no wrong trial at 2,048 tokens
    for name in ("attention_prediction.csv", "attention_heads.csv", "attention_bins.csv"):
        assert (tmp_path / "report" / name) in paths.tables


def test_report_prints_no_impossible_chance_level_or_nan_interval(attention_run, tmp_path):
    # one more trial alone in its cell (1,024 tokens, depth 0.25): its interval is undefined
    records = [make_record(trial_id=tid, context_length=length, correct=correct, depth=0.5, sample=i)
               for i, (tid, length, correct, _) in enumerate(TRIALS)]
    write_records(attention_run, [*records, make_record(trial_id="c1", context_length=1024, correct=True,
                                                        depth=0.25, sample=9)])
    save_trial_attention(attention_run, "c1", _arrays(0.3))
    markdown = write_report(attention_run, tmp_path / "report").report_md.read_text()
    assert "nan" not in markdown.lower()
    assert "n too small" in markdown  # the lone cell's interval and the chance line (5 correct, 2 wrong, 6 heads)
    assert "exceeds AUROC 1." not in markdown and "reaches AUROC 1.00" in markdown


def test_report_without_attention_is_unchanged(tmp_path):
    run_dir = tmp_path / "run"
    write_header(run_dir)
    write_records(run_dir, [make_record()])
    paths = write_report(run_dir, tmp_path / "report")
    assert "Attention inside the model" not in paths.report_md.read_text()
    assert not any("attention" in p.name for p in paths.files)

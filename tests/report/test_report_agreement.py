"""evalkit agree (evalkit/report/analysis/agreement.py): trials paired by grid cell, answers and verdicts
compared, McNemar on the discordant verdicts, gold log-prob differences or the reason there are none."""

from __future__ import annotations

import pytest

from evalkit.cli import main
from evalkit.report.analysis.agreement import agreement
from evalkit.report.data.load import load_results
from report_fixtures import grid_records, write_header, write_records


def two_runs(tmp_path, change_b):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    records_a = grid_records()
    records_b = [change_b(i, dict(r, model="served-copy", trial_id=r["trial_id"] + "-b")) for i, r in enumerate(records_a)]
    for run_dir, rows in ((a_dir, records_a), (b_dir, records_b)):
        write_header(run_dir)
        write_records(run_dir, rows)
    return a_dir, b_dir


def flip_two_and_drop_logprobs(i, row):
    if i in (0, 1):  # two right answers in A become wrong in B
        row.update(correct=False, exact_match=False, generated="no idea")
    if i == 2:
        row.update(generated="12345.")  # other text, same verdict
    row.update(gold_logprob_sum=None, gold_logprob_mean=None)
    return row


def test_pairs_by_grid_cell_and_counts_agreement(tmp_path):
    a_dir, b_dir = two_runs(tmp_path, flip_two_and_drop_logprobs)
    result = agreement(load_results(a_dir), load_results(b_dir))
    assert result.pairs == 60
    assert result.answers_equal == 57 and result.correct_equal == 58
    assert (result.a_only, result.b_only) == (2, 0)
    assert result.mcnemar_p == pytest.approx(0.5)  # two discordant pairs, both one way: 2 * 0.5**2
    assert result.logprob_pairs == 0 and result.logprob_diff_mean is None


def test_logprob_differences_are_b_minus_a(tmp_path):
    a_dir, b_dir = two_runs(tmp_path, lambda i, r: dict(r, gold_logprob_sum=r["gold_logprob_sum"] - (0.5 if i == 0 else 0.1)))
    result = agreement(load_results(a_dir), load_results(b_dir))
    assert result.logprob_pairs == 60
    assert result.logprob_diff_max_abs == pytest.approx(0.5)
    assert result.logprob_diff_median == pytest.approx(-0.1)


def test_cli_prints_the_table(tmp_path, capsys):
    a_dir, b_dir = two_runs(tmp_path, flip_two_and_drop_logprobs)
    assert main(["agree", str(a_dir), str(b_dir)]) == 0
    out = capsys.readouterr().out
    assert "| answers equal (exact text) | 57 / 60 (95.0%) |" in out
    assert "| right in A only / in B only | 2 / 0 (McNemar exact p = 0.5) |" in out
    assert "no pair has a gold log-prob in both runs" in out


def test_cli_refuses_runs_of_different_grids(tmp_path, capsys):
    a_dir, b_dir = two_runs(tmp_path, lambda i, r: dict(r, context_length=r["context_length"] + 1))
    assert main(["agree", str(a_dir), str(b_dir)]) == 2
    assert "share no finished trial of the same grid cell" in capsys.readouterr().err

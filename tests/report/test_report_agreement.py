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


def backend_header(run_dir, backend):
    entry = {"name": "m", "backend": backend, **({"served": {"engine": "llama_cpp"}} if backend == "served" else {})}
    write_header(run_dir, config={"models": [entry], "tasks": ["passkey"]})


def test_report_of_two_backends_shows_the_agreement_table(tmp_path):
    from evalkit.report.render import write_report

    a_dir, b_dir = two_runs(tmp_path, lambda i, r: dict(flip_two_and_drop_logprobs(i, r),
                                                        gold_logprob_sum=-1.0 - 0.01 * i))
    backend_header(a_dir, "transformers")
    backend_header(b_dir, "served")
    paths = write_report([a_dir, b_dir], tmp_path / "report")
    md = paths.report_md.read_text()
    assert "## Backend agreement" in md and "(transformers); B = " in md and "(served (llama_cpp))" in md
    section = md[md.index("## Backend agreement"):].split("\n## ")[0]
    cells = dict(tuple(c.strip() for c in line.strip("|").split("|", 1)) for line in section.splitlines()
                 if line.startswith("| ") and "---" not in line)
    assert cells["answers equal (exact text)"] == "57 / 60 (95.0%)"
    assert cells["right in A only / in B only"] == "2 / 0 (McNemar exact p = 0.5)"
    # B - A = (-1 - 0.01 i) - A's log-prob: a spread, not one number
    assert cells["gold log-prob B - A"].startswith("60 pairs: mean ") and "10-90% " in cells["gold log-prob B - A"]
    assert "Backend agreement" in paths.report_html.read_text()


def test_report_of_one_backend_has_no_agreement_section(tmp_path):
    from evalkit.report.render import write_report

    a_dir, b_dir = two_runs(tmp_path, flip_two_and_drop_logprobs)
    backend_header(a_dir, "transformers")
    backend_header(b_dir, "transformers")
    assert "Backend agreement" not in write_report([a_dir, b_dir], tmp_path / "report").report_md.read_text()

"""The throughput benchmarks run end to end on a tiny model and print their tables (no timing is asserted)."""

from __future__ import annotations

from conftest import benchmark_module


def test_throughput_prints_both_tables_and_the_checks(tiny_model_dir, capsys) -> None:
    throughput = benchmark_module("throughput")
    throughput.main(["--model", str(tiny_model_dir), "--rounds", "1", "--lengths", "160", "224", "--depths", "3",
                     "--max-new-tokens", "4"])  # fmt: skip
    out = capsys.readouterr().out
    for label in throughput.LABELS.values():
        assert f"| {label} |" in out
    assert "| 160 |" in out and "| 224 |" in out and "(d)/(b)" in out
    # reuse changes no answer and no log-prob beyond float noise; attention mass matches the eager way
    assert "(d) vs (c): 6/6 answers equal" in out and "(d) vs (a): 6/6 answers equal" in out
    diffs = [float(line.split("max |gold log-prob diff| ")[1].split(",")[0]) for line in out.splitlines() if "(d) vs" in line]
    assert len(diffs) == 2 and max(diffs) < 1e-4


def test_gpu_benchmark_smoke_runs_on_cpu(capsys) -> None:
    benchmark_module("throughput_gpu").main(["--tiny", "--rounds", "1", "--lengths", "128", "--depths", "3"])
    out = capsys.readouterr().out
    assert "| 128 | 3 |" in out and "(d)/(b)" in out


def test_gold_rollback_compares_both_ways_on_the_same_prompts(capsys) -> None:
    benchmark_module("gold_rollback").main(["--tiny", "--reps", "1", "--lengths", "64"])
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| 64 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3].endswith("x") and float(cells[4]) < 1e-4 and cells[5] == "True"

"""The report of a ``context_unit: window`` run (``evalkit/report/data/lengths.py``): by-length tables and charts put
the fraction of each model's window on the axis, so models with different windows line up; tokens stay visible."""

from __future__ import annotations

import pandas as pd
import pytest

from report_fixtures import grid_records, write_header, write_records
from evalkit.report import write_report
from evalkit.report.analysis.compare import length_comparison
from evalkit.report.analysis.tables import summary_table, to_markdown
from evalkit.report.charts.accuracy import new_figure, plot_accuracy_vs_depth, plot_heatmap
from evalkit.report.charts.compare import plot_variants_by_length
from evalkit.report.data.labels import add_variants
from evalkit.report.data.load import load_results

BIG, SMALL = "org/long-window", "org/short-window"
FRACTIONS = {BIG: {2048: 0.25, 4096: 0.5}, SMALL: {512: 0.25, 1024: 0.5}}  # windows of 8,192 and 2,048 tokens
# (length: its first or second, depth) -> (correct, n): the half-window length loses the middle
STEPS = {(0, 0.0): (10, 10), (0, 0.5): (9, 10), (0, 1.0): (10, 10),
         (1, 0.0): (10, 10), (1, 0.5): (4, 10), (1, 1.0): (9, 10)}


def _window_run(tmp_path, fractions: bool = True):
    """Both models' grids at a quarter and half of their windows (the fixture GRID's accuracies)."""
    records = []
    for model, lengths in FRACTIONS.items():
        grid = {(list(lengths)[step], depth): cell for (step, depth), cell in STEPS.items()}
        for record in grid_records(model, grid=grid):
            records.append({**record, "context_fraction": lengths[record["context_length"]] if fractions else None})
    run = tmp_path / "run"
    write_header(run, models={BIG: "a1", SMALL: "b2"}, config={"models": [BIG, SMALL], "tasks": ["passkey"]})
    write_records(run, records)
    return run


def test_the_summary_keeps_tokens_and_adds_the_fraction_of_the_window(tmp_path):
    df = load_results(_window_run(tmp_path))
    table = summary_table(df)
    assert list(table.columns[:5]) == ["model", "task", "context_length", "context_fraction", "depth"]
    pairs = set(zip(table["model"], table["context_length"], table["context_fraction"]))
    assert pairs == {(BIG, 2048, 0.25), (BIG, 4096, 0.5), (SMALL, 512, 0.25), (SMALL, 1024, 0.5)}
    markdown = to_markdown(table)
    assert "context length (% of window)" in markdown and " 25.0% |" in markdown
    plain = summary_table(load_results(_window_run(tmp_path / "tokens", fractions=False)))
    assert "context_fraction" not in plain.columns  # a token run's table is as it was


def test_models_with_different_windows_line_up_on_the_fraction_axis(tmp_path):
    df = add_variants(load_results(_window_run(tmp_path)))
    ax = new_figure().add_subplot()
    plot_variants_by_length(df, ax, "passkey")
    assert ax.get_xlabel() == "context length (% of the model's window)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25%", "50%"]
    lines = {line.get_label(): list(line.get_xdata()) for line in ax.get_lines() if line.get_label() in FRACTIONS}
    assert lines == {BIG: [0.0, 1.0], SMALL: [0.0, 1.0]}  # both models at the same two points
    compared = length_comparison(df)  # paired at the same fraction, each side with its own tokens
    row = compared[compared["context_fraction"] == 0.5].iloc[0]
    assert (row["context_length"], row["baseline_context_length"]) == (1024, 4096)
    assert row["accuracy"] == row["baseline_accuracy"] == pytest.approx(23 / 30)  # same grid: no difference
    tokens = add_variants(load_results(_window_run(tmp_path / "tokens", fractions=False)))
    assert length_comparison(tokens).empty  # on tokens the two models share no length


def test_a_models_heatmap_and_depth_curves_label_the_fraction_with_its_tokens(tmp_path):
    df = load_results(_window_run(tmp_path))
    ax = new_figure().add_subplot()
    plot_heatmap(df, ax, SMALL, "passkey")
    assert ax.get_xlabel() == "context length (% of the model's window)"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["25%\n(512 tokens)", "50%\n(1,024 tokens)"]
    ax = new_figure().add_subplot()
    plot_accuracy_vs_depth(df, ax, BIG, "passkey")
    legend = ax.get_legend()
    assert legend.get_title().get_text() == "context length (% of the model's window)"
    assert [t.get_text() for t in legend.get_texts()] == ["25% (2,048 tokens)", "50% (4,096 tokens)"]


def test_the_report_of_a_window_run_labels_its_length_axis_as_a_fraction(tmp_path):
    paths = write_report([_window_run(tmp_path)], tmp_path / "report")
    report = paths.report_md.read_text(encoding="utf-8")
    assert "context length (% of window)" in report and "25% (512 tokens)" in report
    assert "50% (1,024 vs 4,096 tokens)" in report  # the comparison: one fraction, each model's tokens
    summary = pd.read_csv(paths.summary_csv)
    assert set(summary["context_fraction"]) == {0.25, 0.5}
    assert any(p.name.startswith("compare_by_length") for p in paths.charts)

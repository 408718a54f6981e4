"""Why facts are missed, in the report: failure mix, chart, decision line, escaping, old runs unchanged
(evalkit/report/analysis/failure_mix.py, charts/failures.py, document/failure_section.py)."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from failure_fixtures import HOSTILE_DISTRACTOR, MIX, mix_records
from report_fixtures import make_record, write_demo_runs, write_header, write_records

import evalkit.report.render as render
from evalkit.report import write_report
from evalkit.report.analysis.failure_mix import (
    failure_mix,
    failure_table,
    failure_trials,
    miss_lines,
    position_fraction,
)
from evalkit.report.analysis.stats import wilson_interval
from evalkit.report.charts.accuracy import new_figure
from evalkit.report.charts.failures import FAILURE_COLORS, plot_failure_mix
from evalkit.report.data.labels import add_variants
from evalkit.report.document.content_section import ContentReport
from evalkit.report.document.blocks import md_text
from evalkit.report.document.failure_section import FailureReport, focus_bullets, look_alike_examples

LINE = ("**Why facts are missed:** misses in the middle band (30–70%) are 71% \\[45–88\\] look-alike answers "
        "(10 of 14 misses in 20 trials): the model finds the wrong fact, not nothing.")


def _frame() -> pd.DataFrame:
    return add_variants(pd.DataFrame(mix_records()))


def test_the_mix_counts_each_failure_type_per_model_and_band():
    table = failure_table(_frame()).set_index(["variant", "band"])
    middle = table.loc[("org/lookalike", "middle")]
    assert (middle["trials"], middle["misses"], middle["distractor"], middle["absent"], middle["format"]) == \
           (20, 14, 10, 2, 2)
    assert middle["accuracy"] == pytest.approx(0.3)
    assert table.loc[("org/lookalike", "end"), "format"] == 1 and table.loc[("org/split", "middle"), "absent"] == 5
    assert "partial" not in table.columns  # no trial was partial: no column for it


def test_the_miss_line_is_said_only_when_a_band_has_enough_misses_of_one_kind():
    lines = miss_lines(_frame())
    assert set(lines) == {"org/lookalike"}  # org/split: no type is a majority; org/few: only 5 misses
    line = lines["org/lookalike"]
    assert (line.band, line.failure, line.count, line.misses, line.trials) == ("middle", "distractor", 10, 14, 20)
    assert (line.share_low, line.share_high) == pytest.approx(wilson_interval(10, 14))


def test_the_stacked_bar_heights_are_the_shares_of_each_type():
    mix = failure_mix(_frame())
    fig = new_figure()
    ax = plot_failure_mix(mix, fig.add_subplot(), "org/lookalike")
    bars = {}
    for patch in ax.patches:
        bars.setdefault(patch.get_facecolor()[:3], []).append((patch.get_y(), patch.get_height()))
    as_rgb = {name: tuple(int(FAILURE_COLORS[name][i:i + 2], 16) / 255 for i in (1, 3, 5))
              for name in ("correct", "distractor", "absent", "format")}
    heights = {name: [round(h, 6) for _, h in bars[rgb]] for name, rgb in as_rgb.items()}
    assert heights == {"correct": [100, 30, 95], "distractor": [0, 50, 0], "absent": [0, 10, 0],
                       "format": [0, 10, 5]}  # start, middle, end; in % of the band's trials
    assert [round(y, 6) for y, _ in bars[as_rgb["distractor"]]] == [100, 30, 95]  # stacked on the correct ones
    assert [t.get_text() for t in ax.get_xticklabels()] == ["start\nn=20", "middle\nn=20", "end\nn=20"]


@pytest.fixture(scope="module")
def failure_report_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("failures")
    run = base / "run"
    write_header(run, models={m: "abc123" for m in MIX}, config={"models": list(MIX), "tasks": ["passkey"]})
    write_records(run, mix_records(hostile_first=True))
    return write_report([run], base / "out")


def test_the_report_has_the_chart_the_table_and_the_decision_line(failure_report_dir):
    paths = failure_report_dir
    text = paths.report_md.read_text(encoding="utf-8")
    decision = text.split("**Decision.**")[1].split("\nTables: ")[0]
    assert LINE in decision and decision.count("Why facts are missed:") == 1
    assert "## Why facts are missed" in text
    assert {p.name for p in paths.charts} >= {"failures_org-lookalike.png", "failures_org-split.svg"}
    assert (paths.out_dir / "failure_types.csv").is_file() and paths.out_dir / "failure_types.csv" in paths.tables
    row = re.search(r"\| org/lookalike +\| middle \(30–70%\) \|[^\n]*", text).group(0)
    assert [c.strip() for c in row.strip("|").split("|")] == ["org/lookalike", "middle (30–70%)", "20", "30%", "14",
                                                              "10 (71%)", "2 (14%)", "2 (14%)"]


def test_distractor_text_is_escaped_in_markdown_and_html(failure_report_dir):
    paths = failure_report_dir
    text = paths.report_md.read_text(encoding="utf-8")
    page = paths.report_html.read_text(encoding="utf-8")
    assert "<script>document.title" not in text and "<script>document.title" not in page
    row = next(line for line in text.splitlines() if "pwned" in line)
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;The pass key \\| is 99999." in row
    assert row.count(" | ") == 7  # 8 cells: the pipe inside the look-alike's text does not open a cell
    assert html.escape(HOSTILE_DISTRACTOR) in page  # shown as text in its table cell
    assert not re.search(r"<script[ >]", page)  # the HTML report has no script at all


def test_a_report_of_records_without_failure_types_is_unchanged(tmp_path, monkeypatch):
    runs = write_demo_runs(tmp_path / "runs")
    new = write_report(runs, tmp_path / "new")
    monkeypatch.setattr(render, "failure_report", lambda *a, **k: FailureReport())
    monkeypatch.setattr(render, "content_report", lambda *a, **k: ContentReport())
    old = write_report(runs, tmp_path / "old")
    assert new.report_md.read_text("utf-8") == old.report_md.read_text("utf-8")
    assert new.report_html.read_text("utf-8") == old.report_html.read_text("utf-8")
    assert sorted(p.name for p in new.files) == sorted(p.name for p in old.files)
    assert "Why facts are missed" not in new.report_md.read_text("utf-8")


def test_records_with_failure_types_but_no_majority_get_no_decision_line(tmp_path):
    run = tmp_path / "run"
    mix = {"org/split": MIX["org/split"]}
    write_header(run, models={"org/split": "abc123"}, config={"models": ["org/split"], "tasks": ["passkey"]})
    write_records(run, mix_records(mix))
    text = write_report([run], tmp_path / "out").report_md.read_text("utf-8")
    assert "**Why facts are missed:**" not in text and "## Why facts are missed" in text
    assert np.isclose(failure_table(add_variants(pd.DataFrame(mix_records(mix))))["misses"].sum(), 14)


def test_a_documents_task_names_the_document_a_wrong_answer_came_from():
    record = make_record(trial_id="d0", task="docs_qa", correct=False, failure="distractor", failure_distractor=3,
                         gold_document_index=0, documents_total=10, generated="Paris")
    (row,) = look_alike_examples(add_variants(pd.DataFrame([record]))).itertuples(index=False)
    assert (row[4], row[5], row[6]) == ("Paris", "document 4", "")


def test_where_the_answer_step_looked_is_counted_on_the_misses_with_attention():
    records = mix_records({"org/lookalike": MIX["org/lookalike"]})
    wrong = [r for r in records if not r["correct"]]
    for record, focus in zip(wrong, ["look_alike"] * 9 + ["fact"] * 3 + ["neither"] * 2):
        record["attention_focus"] = focus
    records[0]["attention_focus"] = "fact"  # a right answer: not a miss, not counted
    bullets = focus_bullets(failure_trials(add_variants(pd.DataFrame(records))))
    assert md_text(bullets.items[0]) == ("**org/lookalike:** of 14 misses with attention captured, looked at the fact "
                                         "3, looked at a look-alike 9, neither 2")
    assert focus_bullets(failure_trials(_frame())) is None  # no attention captured


def test_a_documents_trial_falls_in_the_band_of_its_gold_document_position():
    records = [make_record(trial_id=f"d{i}", task="docs_qa", depth=0.5, failure="correct", gold_document_index=i,
                           documents_total=10) for i in (0, 4, 9)] + [make_record(trial_id="p0", depth=0.5,
                                                                                  failure="correct")]
    frame = add_variants(pd.DataFrame(records))
    assert list(position_fraction(frame)) == pytest.approx([0.0, 4 / 9, 1.0, 0.5])
    assert list(failure_trials(frame)["band"]) == ["start", "middle", "end", "middle"]

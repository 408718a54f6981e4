"""Reports from hand-built run directories: loading, Wilson intervals, tables, charts, report.md."""

from __future__ import annotations

import importlib.util

import logging
import math
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from report_fixtures import (
    GRID,
    MODEL,
    TASK,
    grid_records,
    make_record,
    write_grid_run,
    write_header,
    write_records,
)

from evalkit.errors import RunDirError
from evalkit.report import (
    add_wilson_columns,
    depth_length_matrix,
    load_header,
    load_results,
    new_figure,
    plot_accuracy_vs_depth,
    plot_heatmap,
    save_figure,
    summary_table,
    to_markdown,
    wilson_interval,
    wilson_intervals,
    write_report,
)
from evalkit.report.render import _inside, finding_text, slug

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------- Wilson interval


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [(8, 10, 0.4902, 0.9433), (0, 5, 0.0, 0.4345), (5, 5, 0.5655, 1.0), (4, 10, 0.1682, 0.6873), (1, 1, 0.20655, 1.0)],
)
def test_wilson_interval_matches_hand_computed_values(k, n, low, high):
    got = wilson_interval(k, n)
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_interval_edges_and_errors():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(5, 5)[1] == 1.0  # pinned, not 0.9999999
    # wider at higher confidence
    assert wilson_interval(8, 10, 0.99)[0] < wilson_interval(8, 10)[0]
    with pytest.raises(ValueError):
        wilson_interval(6, 5)
    with pytest.raises(ValueError):
        wilson_interval(1, 5, confidence=1.5)


def test_wilson_vectorised_agrees_with_scalar_and_dataframe_helper():
    k, n = np.array([8, 0, 5, 0]), np.array([10, 5, 5, 0])
    lows, highs = wilson_intervals(k, n)
    for i in range(3):
        assert (lows[i], highs[i]) == pytest.approx(wilson_interval(int(k[i]), int(n[i])))
    assert np.isnan(lows[3]) and np.isnan(highs[3])
    frame = add_wilson_columns(pd.DataFrame({"correct": k, "n": n}))
    assert frame["ci_low"].iloc[0] == pytest.approx(0.4902, abs=5e-5)
    assert frame["ci_high"].iloc[0] == pytest.approx(0.9433, abs=5e-5)


# ---------------------------------------------------------------------------- load_results


def test_load_results_types_columns_and_header(tmp_path):
    run = write_grid_run(tmp_path / "run")
    df = load_results(run)
    assert len(df) == sum(n for _, n in GRID.values())
    assert df["correct"].dtype == bool and df["exact_match"].dtype == bool
    assert df["context_length"].dtype == np.int64 and df["sample"].dtype == np.int64
    assert df["depth"].dtype == np.float64 and df["gold_logprob_mean"].dtype == np.float64
    assert isinstance(df["regions"].iloc[0], dict) and df["regions"].iloc[0]["needle"] == [500, 510]
    assert set(df["run_dir"]) == {str(run)} and set(df["config_hash"]) == {"cafe1234"}
    assert load_header(run)["seed"] == 7


def test_torn_last_line_is_skipped_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    write_header(run)
    records = [make_record(trial_id=f"t{i}", sample=i) for i in range(3)]
    torn = '{"trial_id": "t3", "status": "ok", "model": "org/tin'
    write_records(run, records, tail=torn)
    with caplog.at_level(logging.WARNING, logger="evalkit.report.data.load"):
        df = load_results(run)
    assert sorted(df["trial_id"]) == ["t0", "t1", "t2"]
    assert any("torn last line" in r.getMessage() and "trials.jsonl:4" in r.getMessage() for r in caplog.records)


def test_duplicate_trial_id_keeps_the_last_record(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [
        make_record(trial_id="a", correct=False, generated="first"),
        make_record(trial_id="b", sample=1),
        make_record(trial_id="a", correct=True, generated="second"),
    ])
    df = load_results(run)
    assert len(df) == 2
    row = df.set_index("trial_id").loc["a"]
    assert row["generated"] == "second" and bool(row["correct"]) is True


def test_rank_files_are_merged_and_read_after_trials_jsonl(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [make_record(trial_id="a"), make_record(trial_id="x", generated="old")])
    write_records(run, [make_record(trial_id="b")], name="trials.0.jsonl")
    write_records(run, [make_record(trial_id="c"), make_record(trial_id="x", generated="new")],
                  name="trials.10.jsonl")
    write_records(run, [make_record(trial_id="d"), make_record(trial_id="x", generated="mid")],
                  name="trials.2.jsonl")
    df = load_results(run)
    assert sorted(df["trial_id"]) == ["a", "b", "c", "d", "x"]
    assert df.set_index("trial_id").loc["x", "generated"] == "new"  # rank 10 is read after rank 2


def test_skipped_trials_are_kept_and_counted_not_scored(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [
        make_record(trial_id="a", correct=True),
        make_record(trial_id="b", correct=False, status="skipped", skip_reason="too long",
                    gold_logprob_mean=float("nan")),
    ])
    df = load_results(run)
    assert list(df["status"]) == ["ok", "skipped"] and df["skip_reason"].iloc[1] == "too long"
    row = summary_table(df).iloc[0]
    assert (row["n"], row["skipped"], row["correct"], row["accuracy"]) == (1, 1, 1, 1.0)


def test_several_run_dirs_concatenate(tmp_path):
    one = write_grid_run(tmp_path / "one")
    two = write_grid_run(tmp_path / "two", model="other")
    df = load_results([one, two])
    assert set(df["run_dir"]) == {str(one), str(two)} and set(df["model"]) == {MODEL, "other"}


@pytest.mark.parametrize("again", ["same", "dot-slash", "link", "records file"])
def test_one_run_dir_given_twice_is_refused_not_counted_twice(tmp_path, capsys, monkeypatch, again):
    from evalkit.cli import main

    run = write_grid_run(tmp_path / "runA")
    (tmp_path / "alias").symlink_to("runA")
    monkeypatch.chdir(tmp_path)
    second = {"same": "runA", "dot-slash": "./runA/", "link": "alias", "records file": "runA/trials.jsonl"}[again]
    with pytest.raises(RunDirError, match=re.escape(f"{second}: is the run directory runA again")):
        load_results(["runA", second])
    assert main(["report", "runA", second, "--out", "cmp"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "give each run directory once" in err and not (tmp_path / "cmp").exists()
    assert main(["view", "runA", second, "--out", "v.html"]) == 2
    assert "give each run directory once" in capsys.readouterr().err and not (tmp_path / "v.html").exists()
    # two records files of one run are two parts of it, not a repeat
    write_records(run, grid_records(model="other"), name="trials.1.jsonl")
    assert len(load_results(["runA/trials.jsonl", "runA/trials.1.jsonl"])) == 2 * len(grid_records())


def test_empty_or_missing_run_dir_gives_the_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match=re.escape(f"{empty}: no trials*.jsonl found; run `evalkit run CONFIG` first")):
        load_results(empty)
    with pytest.raises(RunDirError, match="no such run directory"):
        load_results(tmp_path / "nope")
    only_torn = tmp_path / "torn"
    write_header(only_torn)
    write_records(only_torn, [], tail='{"trial_id": "t')
    with pytest.raises(RunDirError, match="no complete trial records"):
        load_results(only_torn)


def test_record_missing_fields_names_file_and_line(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [make_record(trial_id="a"), {"trial_id": "b", "status": "ok"}])
    with pytest.raises(RunDirError, match=r"trials\.jsonl:2: record lacks .*model"):
        load_results(run)


# ---------------------------------------------------------------------------- tables


def test_summary_table_matches_hand_computed_groups(tmp_path):
    df = load_results(write_grid_run(tmp_path / "run"))
    table = summary_table(df)
    assert len(table) == len(GRID)
    by_cell = table.set_index(["context_length", "depth"])
    for (length, depth), (correct, n) in GRID.items():
        row = by_cell.loc[(length, depth)]
        assert (row["n"], row["correct"], row["skipped"]) == (n, correct, 0)
        assert row["accuracy"] == pytest.approx(correct / n)
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(wilson_interval(correct, n))
        # exact match: even samples among the correct ones; log-prob -0.5 right / -3.0 wrong
        assert row["exact_match_rate"] == pytest.approx(sum(1 for s in range(correct) if s % 2 == 0) / n)
        assert row["gold_logprob_mean"] == pytest.approx((-0.5 * correct - 3.0 * (n - correct)) / n)
        assert row["prompt_tokens_mean"] == length and row["achieved_depth_mean"] == pytest.approx(depth)
    middle = by_cell.loc[(2048, 0.5)]
    assert middle["accuracy"] == pytest.approx(0.4)


def test_depth_length_matrix_pivots_depth_rows_by_length_columns(tmp_path):
    df = load_results(write_grid_run(tmp_path / "run"))
    matrix = depth_length_matrix(df, MODEL, TASK)
    assert list(matrix.index) == [0.0, 0.5, 1.0] and list(matrix.columns) == [1024, 2048]
    assert matrix.loc[0.5, 2048] == pytest.approx(0.4) and matrix.loc[0.5, 1024] == pytest.approx(0.9)
    with pytest.raises(ValueError, match="org/tiny-model"):
        depth_length_matrix(df, "missing", TASK)


def test_to_markdown_merges_accuracy_interval_and_n_into_one_cell(tmp_path):
    df = load_results(write_grid_run(tmp_path / "run", model="a|b"))
    text = to_markdown(summary_table(df))
    lines = text.strip().splitlines()
    assert len(lines) == 2 + len(GRID)
    assert "accuracy [95% CI] (n)" in lines[0] and "ci_low" not in lines[0]
    assert "40.0% [16.8-68.7] (n=10)" in text and "100.0% [72.2-100.0] (n=10)" in text
    assert "a\\|b" in text  # a pipe in a name does not break the table
    assert {line.count(" | ") for line in lines} == {lines[0].count(" | ")}
    matrix_md = to_markdown(depth_length_matrix(df, "a|b", TASK), percent=True)
    assert "depth \\ context_length" in matrix_md and "40.0%" in matrix_md


# ---------------------------------------------------------------------------- charts


def test_heatmap_annotates_percentages_with_depth_rows_from_zero(tmp_path):
    df = load_results(write_grid_run(tmp_path / "run"))
    fig = new_figure()
    ax = plot_heatmap(df, fig.add_subplot())
    texts = {t.get_text() for t in ax.texts}
    assert {"100%", "90%", "40%"} <= texts
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0%", "50%", "100%"]  # first row drawn at top
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1,024", "2,048"]
    assert "depth" in ax.get_ylabel() and "tokens" in ax.get_xlabel() and MODEL in ax.get_title()
    mesh = ax.collections[0]
    assert mesh.get_clim() == (0.0, 100.0)
    save_figure(fig, tmp_path / "h")


def test_accuracy_vs_depth_has_one_line_per_length_with_bands(tmp_path):
    df = load_results(write_grid_run(tmp_path / "run"))
    fig = new_figure()
    ax = plot_accuracy_vs_depth(df, fig.add_subplot())
    assert len(ax.lines) == 2 and len(ax.collections) == 2  # lines + fill_between bands
    assert ax.get_ylim() == (0.0, 100.0)
    assert ax.get_legend().get_title().get_text() == "context length (tokens)"
    line_2048 = next(line for line in ax.lines if line.get_label() == "2,048")
    assert list(line_2048.get_ydata()) == pytest.approx([100.0, 40.0, 90.0])
    assert "%" in ax.get_ylabel() and "%" in ax.get_xlabel()
    with pytest.raises(ValueError, match="several models"):
        plot_accuracy_vs_depth(pd.concat([df, df.assign(model="other")]), fig.add_subplot())
    save_figure(fig, tmp_path / "l")


def test_save_figure_writes_png_and_svg_without_pyplot(tmp_path):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = new_figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    paths = save_figure(fig, tmp_path / "model-1.7B_chart")
    assert [p.name for p in paths] == ["model-1.7B_chart.png", "model-1.7B_chart.svg"]
    assert paths[0].read_bytes()[:8] == PNG_MAGIC
    assert ET.parse(paths[1]).getroot().tag.endswith("svg")
    assert plt.get_fignums() == before


# ---------------------------------------------------------------------------- write_report


def _assert_valid_chart_files(paths):
    for path in paths:
        assert path.stat().st_size > 0
        if path.suffix == ".png":
            assert path.read_bytes()[:8] == PNG_MAGIC
        else:
            assert ET.parse(path).getroot().tag.endswith("svg")


def test_write_report_writes_every_file_with_a_correct_finding(tmp_path):
    run = write_grid_run(tmp_path / "run")
    out = tmp_path / "out"
    paths = write_report([run], out)
    stem = "org-tiny-model_passkey"
    expected = {"report.md", "report.html", "viewer.html", "summary.md", "summary.csv", "position_indices.csv",
                "depth_bands.csv", "effective_length.csv", "safety_org-tiny-model.png", "safety_org-tiny-model.svg"} | {
        f"{kind}_{stem}.{ext}" for kind in ("heatmap", "accuracy_vs_depth") for ext in ("png", "svg")
    }  # one variant, no controls: no comparison or controls tables
    if importlib.util.find_spec("pyarrow") is not None:  # tables also as Parquet where pyarrow is installed
        expected |= {name.replace(".csv", ".parquet") for name in expected if name.endswith(".csv")}
    assert {p.name for p in out.iterdir()} == expected == {p.name for p in paths.files}
    _assert_valid_chart_files(paths.charts)

    csv = pd.read_csv(paths.summary_csv)
    assert len(csv) == len(GRID) and csv["n"].sum() == 60
    assert "40.0% [16.8-68.7] (n=10)" in paths.summary_md.read_text()

    report = paths.report_md.read_text()
    assert ("At 2,048 tokens, facts at 50% depth were found 40% of the time (95% CI 17–69%) "
            "vs 100% at 0% depth (95% CI 72–100%).") in report
    assert "Over 60 trials the fact was found 87% of the time" in report
    assert "lost in the middle" in report
    assert "`org/tiny-model` @ `abc123`" in report and "cafe1234" in report and "seed 7" in report
    assert "60 ok, 0 skipped" in report and "transformers 5.0.0" in report
    links = re.findall(r"\]\(([^)]+)\)", report)
    assert {f"heatmap_{stem}.png", f"accuracy_vs_depth_{stem}.png", "summary.csv"} <= set(links)
    assert all((out / link).is_file() for link in links)


def test_hostile_model_names_stay_inside_out_dir(tmp_path):
    base = tmp_path / "case"
    names = ["HuggingFaceTB/SmolLM2-135M-Instruct", "../../evil", "../x/../../y", "org\\..\\win", "a/b", "a b"]
    runs = [write_grid_run(base / "runs" / f"r{i}", model=name) for i, name in enumerate(names)]
    out = base / "out"
    paths = write_report(runs, out)
    written = {p for p in base.rglob("*") if p.is_file()} - {p for r in runs for p in r.rglob("*")}
    assert written == set(paths.files) and all(p.parent == out for p in written)
    # "a/b" and "a b" both slug to "a-b" yet get files of their own
    per_variant = {p for p in paths.charts if p.name.startswith(("heatmap_", "accuracy_vs_depth_"))}
    assert len(per_variant) == 4 * len(names)
    differences = {p for p in paths.charts if p.name.startswith("difference_") and p.suffix == ".png"}
    assert len(differences) == len(names) - 1  # one per variant against the baseline
    with pytest.raises(ValueError, match="would leave"):
        _inside(out, "../escape.png")
    assert "heatmap_HuggingFaceTB-SmolLM2-135M-Instruct_passkey.png" in {p.name for p in paths.charts}
    assert not any(p.name.startswith(".") for p in out.iterdir())


def test_slug_keeps_safe_characters_only():
    assert slug("HuggingFaceTB/SmolLM2-1.7B-Instruct") == "HuggingFaceTB-SmolLM2-1.7B-Instruct"
    assert slug("../..") == "x" and "/" not in slug("../a/../b") and ".." not in slug("../a/../b")


def test_finding_names_the_worst_depth_where_depth_matters_most():
    grid = {(1024, 0.0): (10, 10), (1024, 0.5): (9, 10), (1024, 1.0): (2, 10),
            (4096, 0.0): (10, 10), (4096, 0.5): (10, 10), (4096, 1.0): (8, 10)}
    text = finding_text(summary_table(pd.DataFrame(grid_records(grid=grid))))
    assert ("At 1,024 tokens, facts at 100% depth were found 20% of the time (95% CI 6–51%) "
            "vs 100% at 0% depth (95% CI 72–100%).") in text
    assert "do not overlap" in text and "lost in the middle" not in text
    assert "Pooled over depths, accuracy was 70% at 1,024 tokens and 93% at 4,096 tokens." in text
    flat = {(1024, 0.0): (5, 10), (1024, 1.0): (5, 10)}
    text = finding_text(summary_table(pd.DataFrame(grid_records(grid=flat))))
    assert "Needle depth made no difference" in text and "overlap" not in text
    close = {(1024, 0.0): (9, 10), (1024, 1.0): (7, 10)}
    text = finding_text(summary_table(pd.DataFrame(grid_records(grid=close))))
    assert "facts at 100% depth were found 70% of the time" in text and "intervals overlap" in text


def test_write_report_notes_skipped_trials_and_runs_with_only_skips(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    records = grid_records(grid={(1024, 0.0): (1, 2)}) + [
        make_record(trial_id="s1", model="dead/model", status="skipped", skip_reason="too long"),
    ]
    write_records(run, records)
    paths = write_report(run, tmp_path / "out")
    report = paths.report_md.read_text()
    assert "2 ok, 1 skipped" in report and "No completed trials: 1 trial was skipped." in report
    assert "Skip reasons: too long (1)." in report
    assert not any("dead-model" in p.name for p in paths.charts)


@pytest.mark.parametrize(("cut", "stated"), [(8, True), (0, False)])
def test_the_decision_block_states_the_share_of_cut_off_answers(tmp_path, cut, stated):
    run = tmp_path / "run"
    write_header(run)
    records = grid_records()
    wrong = [r for r in records if not r["correct"]]
    for record in wrong[:cut]:
        record["extra"] = {"truncated": True}
    for record in [r for r in records if r["correct"]][:5]:  # right whatever followed: not counted
        record["extra"] = {"truncated": True}
    write_records(run, records)
    report = write_report(run, tmp_path / "out").report_md.read_text()
    decision = report[:report.index("\n## ", report.index("Decision."))]  # the block, up to the next section
    line = f"**Cut-off answers:** {cut} of {len(records)} trials (13%) were scored wrong after they ran out of"
    assert (line in decision) == stated

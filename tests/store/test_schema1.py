"""A run directory written before schema 2 (by the code of 1c48c99) loads, reports and resumes."""

from __future__ import annotations

import json

from store_schema1_fixtures import SCHEMA1_DONE, SCHEMA1_PLANNED, SCHEMA1_RUN, schema1_workdir
from evalkit.config.schema import load_config
from evalkit.report import write_report
from evalkit.report.analysis.completeness import missing_cells
from evalkit.report.data.load import load_results
from evalkit.run.runner import run_eval
from evalkit.store import format as fmt


def test_schema1_run_loads_with_typed_axes():
    header = fmt.read_header(SCHEMA1_RUN)
    assert fmt.header_schema(header) == 1 and "schema_version" not in header
    df = load_results(SCHEMA1_RUN)
    assert len(df) == SCHEMA1_DONE and (df["schema_version"] == 2).all()
    assert sorted(df["control"]) == ["", "", "", "", "closed_book", "oracle"]
    assert sorted(df["question_position"]) == ["after"] * 4 + ["before"] * 2
    assert sorted(df["layout"]) == ["question after"] * 4 + ["question before"] * 2  # as schema 1 labelled them
    assert (df["context_markers"] == "none").all() and df["chat_template"].isna().all()
    assert all(not ({"control", "layout", "layout_axes"} & set(e)) for e in df["extra"])


def test_schema1_run_reports(tmp_path):
    paths = write_report([SCHEMA1_RUN], tmp_path / "report")
    report = paths.report_md.read_text()
    assert "## Controls" in report and "question before" in report
    summary = paths.summary_csv.read_text()
    assert "question after" in summary and "question before" in summary


def test_schema1_run_resumes_without_doubling_a_trial(tmp_path, tiny_model_dir, monkeypatch):
    import evalkit.models.hf as hf

    work = schema1_workdir(tmp_path, tiny_model_dir)
    monkeypatch.chdir(work)  # the fixture's model and run paths are relative, as when it was made
    # it was made when a local folder recorded revision "unknown" (today: a content hash, which a resume compares)
    monkeypatch.setattr(hf, "folder_revision", lambda *args: "unknown")
    config = load_config("cfg.yaml")

    again = run_eval(config, "cfg.yaml", limit=SCHEMA1_DONE, quiet=True, write_report=False)
    assert (again.planned, again.already_done, again.ran) == (SCHEMA1_DONE, SCHEMA1_DONE, 0)

    rest = run_eval(config, "cfg.yaml", quiet=True, write_report=False)
    assert (rest.planned, rest.already_done, rest.ran) == (SCHEMA1_PLANNED, SCHEMA1_DONE, SCHEMA1_PLANNED - SCHEMA1_DONE)
    lines = [json.loads(line) for line in (work / "run" / "trials.jsonl").read_text().splitlines()]
    assert len(lines) == len({r["trial_id"] for r in lines}) == SCHEMA1_PLANNED  # every trial once
    assert ["schema_version" in r for r in lines] == [False] * SCHEMA1_DONE + [True] * (SCHEMA1_PLANNED - SCHEMA1_DONE)
    df = load_results(work / "run")
    assert sorted(df["control"]) == ["", "", "", "", "closed_book", "closed_book", "oracle", "oracle"]
    assert sorted(df["layout"]) == ["question after"] * 4 + ["question before"] * 4
    header = fmt.read_header(work / "run")
    assert header["planned"]["trials"] == SCHEMA1_PLANNED and fmt.header_schema(header) == 1
    assert missing_cells(df, header).empty  # the plan's cells are the records' cells (controls, layouts)
    assert len(missing_cells(df.iloc[:5], header)) == 3

"""An incomplete (or still running) run says so: planned against recorded trials, and the partial cells (D20)."""

from __future__ import annotations

import re

import pandas as pd

from report_fixtures import GRID, MODEL, TASK, grid_records, make_record, write_header, write_records
from evalkit.report import write_report
from evalkit.report.analysis.completeness import missing_cells, planned_trials
from evalkit.report.data.load import load_header, load_results


def _plan(grid: dict, controls: int = 0) -> dict:
    cells = [{"model": MODEL, "task": TASK, "control": "", "layout": "", "context_length": length, "depth": depth,
              "trials": n} for (length, depth), (_, n) in grid.items()]
    if controls:
        cells.append({"model": MODEL, "task": TASK, "control": "oracle", "layout": "", "context_length": 0,
                      "depth": None, "trials": controls})
    return {"trials": sum(c["trials"] for c in cells), "cells": cells}


def test_report_of_a_partial_run_counts_the_missing_trials_and_lists_partial_cells(tmp_path):
    run = tmp_path / "run"
    write_header(run, planned=_plan(GRID, controls=2))
    records = [r for r in grid_records() if not (r["context_length"] == 2048 and r["sample"] >= 7)]
    records.append(make_record(trial_id="oracle-0", control="oracle", context_length=0, depth=float("nan")))
    write_records(run, records)
    df = load_results(run)
    missing = missing_cells(df, load_header(run))
    assert planned_trials(load_header(run)) == 62
    depths = [None if pd.isna(d) else d for d in missing["depth"]]  # no depth for the oracle
    assert list(zip(missing["context_length"], depths, missing["recorded"], missing["planned"])) == [
        (2048, 0.0, 7, 10), (2048, 0.5, 7, 10), (2048, 1.0, 7, 10), (0, None, 1, 2)]

    report = write_report([run], tmp_path / "out").report_md.read_text()
    assert f"{len(records)} of 62 planned recorded" in report
    assert "Incomplete run: 10 of 62 planned trials have no record" in report and "4 cells below" in report
    assert re.search(r"\| passkey +\| oracle +\| - +\| +0 \| +- \| +1 \| +2 \|", report)  # the oracle cell


def test_report_of_a_complete_run_or_an_old_header_says_nothing_is_missing(tmp_path):
    complete = tmp_path / "complete"
    write_header(complete, planned=_plan(GRID))
    write_records(complete, grid_records())
    report = write_report([complete], tmp_path / "out").report_md.read_text()
    assert "60 of 60 planned recorded" in report and "Incomplete run" not in report

    old = tmp_path / "old"  # a header written before plans were recorded
    write_header(old)
    write_records(old, grid_records()[:5])
    report = write_report([old], tmp_path / "out2").report_md.read_text()
    assert "planned" not in report and "Incomplete run" not in report


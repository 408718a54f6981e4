"""Which records belong to a run (evalkit/store/run_plan.py): hand-built header and records, no model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evalkit.config.trial_ids import trial_id, trial_variant
from evalkit.errors import RunDirError
from evalkit.store.format import parse_record
from evalkit.store.run_plan import check_in_plan, header_plan, outside_plan
from report_fixtures import MODEL, TASK, make_record

ARM = {"arm": "mask_heads", "heads": [[0, 1]], "from_run": None, "top_k": 0, "random_k": 0, "seed": 0}
HEADER = {
    "models": {MODEL: "abc123"}, "task_hashes": {TASK: "h1"}, "seed": 7, "planned": {"trials": 1, "cells": []},
    "config": {"context_lengths": [1024], "depths": [0.5], "samples": 2, "controls": ["closed_book"],
               "mitigations": [{"name": "", "arm": "none"}, {"name": "m", **ARM}]},
}


def _record(**changes):
    values = dict(model=MODEL, task=TASK, context_length=1024, depth=0.5, sample=0, mitigation="none", control="")
    values.update(changes)
    depth = None if values["control"] == "closed_book" else values["depth"]
    arm = dict(ARM) if values["mitigation"] == "m" else None
    tid = trial_id(model=MODEL, revision="abc123", task=TASK, task_hash="h1", context_length=values["context_length"],
                   depth=depth, sample=values["sample"], config_seed=7,
                   variant=trial_variant(values["control"], (), arm) or None)
    return parse_record(make_record(trial_id=tid, **values))


def test_the_runs_own_trials_are_in_its_plan():
    plan = header_plan(HEADER)
    for record in (_record(), _record(sample=1), _record(mitigation="m"),
                   _record(control="closed_book", depth=float("nan"))):
        assert outside_plan(record, plan) == ""


@pytest.mark.parametrize(("record", "reason"), [
    (lambda: _record(context_length=2048), "context_length 2048 is not one of [1024]"),
    (lambda: _record(depth=0.25), "depth 0.25 is not one of [0.5]"),
    (lambda: _record(sample=2), "sample 2 is not below samples 2"),
    (lambda: _record(mitigation="other"), "mitigation 'other' is not one of ['none', 'm']"),
    (lambda: _record(control="oracle"), "control 'oracle' is not one of ['closed_book']"),
    (lambda: _record(model="org/else"), "model 'org/else' is not one of ['org/tiny-model']"),
    (lambda: _record(task="kv"), "task 'kv' is not one of ['passkey']"),
    (lambda: _record(question_position="before"), "layout 'question before' is not one of this run's layouts"),
    (lambda: dataclasses.replace(_record(), trial_id="0123456789abcdef"), "is not the id this run gives"),
])
def test_a_record_outside_the_plan_is_named_with_its_reason(tmp_path, record, reason):
    plan = header_plan(HEADER)
    assert reason in outside_plan(record(), plan)
    with pytest.raises(RunDirError, match=r"trials\.1\.jsonl:3: not a trial of this run's header"):
        check_in_plan(tmp_path / "trials.1.jsonl", 3, record(), plan)


def test_headers_without_a_plan_check_nothing():
    assert header_plan({k: v for k, v in HEADER.items() if k != "planned"}) is None
    assert header_plan({**HEADER, "config": {"models": [MODEL]}}) is None  # a hand-written header
    check_in_plan(Path("x"), 1, _record(context_length=2048), None)


def test_a_window_runs_records_are_checked_against_the_headers_resolved_tokens_and_fractions():
    header = {**HEADER, "config": {**HEADER["config"], "context_unit": "window", "context_lengths": [0.25, 0.5]},
              "resolved_lengths": {MODEL: {"window": 4096, "tokens": [1024, 2048]}}}
    plan = header_plan(header)
    assert outside_plan(_record(context_fraction=0.25), plan) == ""
    assert outside_plan(_record(context_length=2048, context_fraction=0.5), plan) == ""
    assert "context_fraction 0.5 is not 0.25, the fraction of 1024 tokens" in \
        outside_plan(_record(context_fraction=0.5), plan)
    assert "context_length 512 is not one of [1024, 2048]" in outside_plan(_record(context_length=512), plan)
    # a token run's record copied in carries no fraction, and a window run's carries one
    assert "context_fraction None is not 0.25" in outside_plan(_record(), plan)
    assert "context_fraction 0.25 is not None" in outside_plan(_record(context_fraction=0.25), header_plan(HEADER))

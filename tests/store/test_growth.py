"""A run grows by raising ``samples``: the recorded samples stay, the new ones run, fewer samples are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.cli import main
from evalkit.errors import RunDirError
from evalkit.report.data.load import load_results
from evalkit.store import format as fmt
from evalkit.store.growth import SAMPLES_FREE_HASH_KEY, grown_header


def _config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    fields = dict(models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
                  tasks=["passkey"], context_lengths=[128], depths=[0.0, 1.0], samples=1, seed=5,
                  values="per_trial", output_dir=str(tmp_path / "run"))
    fields.update(changes)
    return write_config(tmp_path / "cfg.yaml", **fields)


def _lines(run_dir: Path) -> list[str]:
    return (run_dir / "trials.jsonl").read_text().splitlines()


def test_more_samples_grow_the_run_and_keep_what_was_recorded(tmp_path, tiny_model_dir, caplog):
    run_dir = tmp_path / "run"
    assert main(["run", str(_config(tmp_path, tiny_model_dir, samples=1)), "--quiet", "--no-report"]) == 0
    first = _lines(run_dir)
    assert len(first) == 2

    config = _config(tmp_path, tiny_model_dir, samples=3)
    assert main(["run", str(config), "--quiet", "--no-report"]) == 0
    assert "grows from 1 to 3 samples" in caplog.text
    lines = _lines(run_dir)
    assert lines[:2] == first and len(lines) == 6  # the recorded sample untouched, two new ones appended
    assert sorted(json.loads(line)["sample"] for line in lines) == [0, 0, 1, 1, 2, 2]
    header = fmt.read_header(run_dir)
    assert header["config"]["samples"] == 3 and header["planned"]["trials"] == 6

    # a run of samples: 3 from scratch makes the same records: growing is not an approximation of it
    fresh = _config(tmp_path, tiny_model_dir, samples=3, output_dir=str(tmp_path / "fresh"))
    assert main(["run", str(fresh), "--quiet", "--no-report"]) == 0
    assert fmt.read_header(tmp_path / "fresh")["config_hash"] == header["config_hash"]
    columns = ["trial_id", "needle", "generated", "prompt_sha256", "correct"]
    grown = load_results(run_dir)[columns].sort_values("trial_id").reset_index(drop=True)
    made = load_results(tmp_path / "fresh")[columns].sort_values("trial_id").reset_index(drop=True)
    assert grown.equals(made)

    assert main(["run", str(config), "--quiet", "--no-report"]) == 0  # and it resumes as any run
    assert len(_lines(run_dir)) == 6


def test_fewer_samples_are_refused_in_one_line_and_nothing_is_lost(tmp_path, tiny_model_dir, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(_config(tmp_path, tiny_model_dir, samples=2)), "--quiet", "--no-report"]) == 0
    before = _lines(run_dir)
    capsys.readouterr()
    assert main(["run", str(_config(tmp_path, tiny_model_dir, samples=1)), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert "samples: 1 would leave recorded samples out" in err and "set samples to 2 or more" in err
    assert _lines(run_dir) == before and fmt.read_header(run_dir)["config"]["samples"] == 2


def test_more_samples_with_another_change_is_still_a_different_config(tmp_path, tiny_model_dir, capsys):
    run_dir = tmp_path / "run"
    assert main(["run", str(_config(tmp_path, tiny_model_dir)), "--quiet", "--no-report"]) == 0
    capsys.readouterr()
    assert main(["run", str(_config(tmp_path, tiny_model_dir, samples=2, seed=6)), "--quiet", "--no-report"]) == 2
    assert "different config" in capsys.readouterr().err
    assert len(_lines(run_dir)) == 2


def test_a_header_from_before_the_hash_grows_from_its_config(tmp_path, tiny_model_dir):
    assert main(["run", str(_config(tmp_path, tiny_model_dir)), "--quiet", "--no-report"]) == 0
    existing = fmt.read_header(tmp_path / "run")
    old = {k: v for k, v in existing.items() if k != SAMPLES_FREE_HASH_KEY}
    grown_config = {**old["config"], "samples": 4}
    new = {**old, "config": grown_config, "config_hash": "another", SAMPLES_FREE_HASH_KEY:
           existing[SAMPLES_FREE_HASH_KEY], "planned": {"trials": 8, "cells": []}}
    grown = grown_header(tmp_path / "run", old, new)
    assert grown is not None and grown["config"]["samples"] == 4 and grown["planned"]["trials"] == 8
    assert grown["started_at"] == old["started_at"]  # the run's own facts stay
    tampered = {**old, "config": {**old["config"], "depths": [0.5]}}  # another grid: not a growth
    assert grown_header(tmp_path / "run", tampered, new) is None
    with pytest.raises(RunDirError, match="samples: 1 would leave"):
        grown_header(tmp_path / "run", {**new, "config_hash": "x", SAMPLES_FREE_HASH_KEY: "y"},
                     {**old, SAMPLES_FREE_HASH_KEY: "y"})

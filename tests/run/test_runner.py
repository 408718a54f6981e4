"""Runner: records per trial, resume after a kill, refusal of a changed config, saved prompts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from run_fixtures import records, tiny_config
from evalkit.config.schema import load_config
from evalkit.errors import RunDirError
from evalkit.run.runner import run_eval
from evalkit.store.run_store import read_record_lines


def test_run_records_every_planned_trial_with_exact_placement(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    rows = records(summary.run_dir)
    assert summary.planned == summary.ran == len(rows) == 2 * 3 * 2
    assert len({r["trial_id"] for r in rows}) == len(rows)
    for row in rows:
        assert row["prompt_tokens"] == row["context_length"]
        start, end = row["regions"]["needle"]
        assert (start, end) == (row["needle_token_start"], row["needle_token_end"])
        assert row["gold_answer"] in row["needle"]
        before, after = row["regions"]["context_before"], row["regions"]["context_after"]
        haystack_tokens = (before[1] - before[0]) + (after[1] - after[0])
        # achieved depth is the whole units' share before the needle (closest boundary: tests/prompt/test_prompt.py);
        # the filler opens the haystack and counts as no unit
        filler = row["extra"].get("filler_tokens", 0)
        filler = filler if haystack_tokens > filler else 0  # filler alone is the haystack
        units_before = max(before[1] - before[0] - filler, 0)
        assert row["achieved_depth"] == pytest.approx(units_before / (haystack_tokens - filler))
        if row["depth"] in (0.0, 1.0):
            assert row["achieved_depth"] == row["depth"]


def test_rerun_skips_done_trials_and_changed_config_is_refused(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir)
    first = run_eval(load_config(path), path, limit=5, quiet=True, write_report=False)
    assert first.ran == 5
    second = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert (second.already_done, second.ran) == (5, 7)
    third = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert third.ran == 0
    with pytest.raises(RunDirError, match="different config"):
        run_eval(load_config(path, ["seed=8"]), path, quiet=True, write_report=False)
    assert len(records(first.run_dir)) == 12


def test_values_per_trial_runs_each_cell_with_its_own_needle_and_resumes(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, values="per_trial", samples=1)
    first = run_eval(load_config(path), path, limit=4, quiet=True, write_report=False)
    second = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert (first.ran, second.already_done, second.ran) == (4, 4, 2)
    rows = records(second.run_dir)
    assert len({r["seed"] for r in rows}) == len({r["needle"] for r in rows}) == 6  # one value per cell
    for row in rows:  # each record's needle is the one its own seed draws
        assert row["gold_answer"] in row["needle"]


def test_saved_prompt_reproduces_the_trial_by_hand(tmp_path, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = tiny_config(tmp_path, tiny_model_dir, save_prompts=True, context_lengths=[128], depths=[0.5], samples=1)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    (record,) = records(summary.run_dir)
    (saved,) = [json.loads(line) for line in (summary.run_dir / "prompts.jsonl").read_text().splitlines()]
    assert saved["trial_id"] == record["trial_id"] and len(saved["input_ids"]) == 128
    # per-token texts are saved only with attention.tokens (tests/report/test_viewer_tokens.py checks them)
    assert "token_texts" not in saved
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    start, end = record["regions"]["needle"]
    assert tokenizer.decode(saved["input_ids"][start:end]).strip() == record["needle"].strip()
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    import torch

    out = model.generate(torch.tensor([saved["input_ids"]]), do_sample=False, max_new_tokens=8,
                         attention_mask=torch.ones(1, 128, dtype=torch.long))
    text = tokenizer.decode(out[0, 128:], skip_special_tokens=True)
    assert text == record["generated"]


def test_same_seed_gives_identical_records(tmp_path, tiny_model_dir):
    rows = []
    for name in ("a", "b"):
        path = tiny_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / name), depths=[0.25], samples=1)
        rows.append(records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir))
    strip = lambda rs: [{k: v for k, v in r.items() if k != "elapsed_s"} for r in rs]  # noqa: E731
    assert strip(rows[0]) == strip(rows[1])


def test_killed_run_resumes_to_exactly_the_planned_trials(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128, 160, 192], depths=[0.0, 0.25, 0.5, 0.75, 1.0])
    run_dir = tmp_path / "run"
    planned = 3 * 5 * 2
    command = [sys.executable, "-m", "evalkit", "run", str(path), "--quiet", "--no-report"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for kill_after in (3, 11):  # kill twice at different points, then finish
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline and len(records(run_dir)) < kill_after and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert len(records(run_dir)) < planned, "the run finished before it could be killed"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    ids = [r["trial_id"] for r in records(run_dir)]
    assert len(ids) == planned and len(set(ids)) == planned
    assert not (run_dir / "run.lock").exists()


def test_resumed_run_feeds_every_trial_as_an_uninterrupted_run(tmp_path, tiny_model_dir, monkeypatch):
    """D15: stopped twice inside reuse groups and resumed, every trial runs the same forwards (the same input
    lengths, so the same float rounding on any device) and the records equal an uninterrupted run's."""
    from evalkit.models import transformers_backend

    real = transformers_backend.run_prompt
    fed: dict[tuple[int, ...], list[int]] = {}  # prompt -> input lengths of the forwards it ran

    def recording(loaded, input_ids, *args, **kwargs):
        lengths: list[int] = []
        handle = loaded.model.register_forward_pre_hook(
            lambda _m, _a, kw: lengths.append(kw["input_ids"].shape[1]), with_kwargs=True
        )
        try:
            return real(loaded, input_ids, *args, **kwargs)
        finally:
            handle.remove()
            fed[tuple(input_ids)] = lengths

    monkeypatch.setattr(transformers_backend, "run_prompt", recording)
    runs = {}
    for name, limits in {"whole": [None], "resumed": [4, 8, None]}.items():  # groups of 3 depths: 4 and 8 split one
        fed.clear()
        path = tiny_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / name))
        for limit in limits:
            run_eval(load_config(path), path, limit=limit, quiet=True, write_report=False)
        rows = [{k: v for k, v in r.items() if k != "elapsed_s"} for r in records(tmp_path / name)]
        runs[name] = rows, dict(fed)
    (whole, whole_fed), (resumed, resumed_fed) = runs["whole"], runs["resumed"]
    by_id = lambda rows: sorted(rows, key=lambda r: r["trial_id"])  # noqa: E731
    assert len(whole) == 12 and by_id(resumed) == by_id(whole)
    assert resumed_fed == whole_fed


def test_a_model_that_fails_to_load_leaves_nothing_and_the_fixed_config_runs(tmp_path, tiny_model_dir):
    """D10: the header waits for the first record, so a load failure writes nothing (no run of "a different config")."""
    import shutil

    from evalkit.errors import ModelLoadError

    broken = tmp_path / "no-weights"
    shutil.copytree(tiny_model_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    path = tiny_config(tmp_path, broken, context_lengths=[128], depths=[0.0])
    with pytest.raises(ModelLoadError):
        run_eval(load_config(path), path, quiet=True, write_report=False)
    assert not (tmp_path / "run").exists()
    fixed = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.0])
    summary = run_eval(load_config(fixed), fixed, quiet=True, write_report=False)
    assert summary.ran == len(records(summary.run_dir)) == 2

"""Memory pressure: a trial that runs out of memory is recorded as skipped, the run goes on, reports count it apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import write_config
from evalkit.config.schema import load_config
from evalkit.run.memory import is_out_of_memory
from evalkit.run.runner import run_eval

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread is fastest


def tiny_config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    fields = dict(
        models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
        tasks=["passkey"], context_lengths=[128, 192], depths=[0.0, 0.5, 1.0], samples=2, seed=3,
        output_dir=str(tmp_path / "run"), save_prompts=True,
    )
    fields.update(changes)
    return write_config(tmp_path / "cfg.yaml", **fields)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def oom_at_192(monkeypatch):
    """Make the backend raise torch.OutOfMemoryError for every 192-token prompt, as a GPU would."""
    from evalkit.models import transformers_backend

    real = transformers_backend.run_prompt
    calls = {"oom": 0}

    def run_prompt(loaded, input_ids, *args, **kwargs):
        if len(input_ids) == 192:
            calls["oom"] += 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return real(loaded, input_ids, *args, **kwargs)

    monkeypatch.setattr(transformers_backend, "run_prompt", run_prompt)
    return calls


def test_out_of_memory_trials_are_skipped_with_the_reason_and_the_run_goes_on(tmp_path, tiny_model_dir, oom_at_192):
    path = tiny_config(tmp_path, tiny_model_dir)
    summary = run_eval(load_config(path), path, quiet=True)
    rows = lines(summary.run_dir / "trials.jsonl")
    assert summary.ran == summary.planned == len(rows) == 12 and summary.skipped == 6 == oom_at_192["oom"]
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert {r["context_length"] for r in skipped} == {192} and len(skipped) == 6
    assert all(r["skip_reason"].startswith("out of memory: OutOfMemoryError: CUDA out of memory") for r in skipped)
    assert all(r["status"] == "ok" and r["prompt_tokens"] == 128 for r in rows if r["context_length"] == 128)

    # the report counts them as skipped, not as wrong
    with open(summary.report_dir / "summary.csv") as f:
        import csv

        cells = list(csv.DictReader(f))
    at_192 = [c for c in cells if c["context_length"] == "192"]
    assert at_192 and all(c["n"] == "0" and c["skipped"] == "2" and c["accuracy"] == "" for c in at_192)
    assert all(c["n"] == "2" and c["skipped"] == "0" for c in cells if c["context_length"] == "128")
    report = (summary.report_dir / "report.md").read_text()
    assert "6 trials were skipped and not counted" in report and "out of memory" in report


def test_rerun_keeps_skipped_trials_unless_asked_to_retry(tmp_path, tiny_model_dir, oom_at_192, monkeypatch):
    path = tiny_config(tmp_path, tiny_model_dir)
    run_eval(load_config(path), path, quiet=True, write_report=False)
    again = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert (again.ran, again.already_done, again.skipped, oom_at_192["oom"]) == (0, 12, 6, 6)

    monkeypatch.undo()  # memory is back: --retry-skipped runs exactly the skipped trials
    retried = run_eval(load_config(path), path, quiet=True, write_report=False, retry_skipped=True)
    assert (retried.ran, retried.already_done, retried.skipped) == (6, 6, 0)
    rows = lines(retried.run_dir / "trials.jsonl")
    ids = [r["trial_id"] for r in rows]
    assert len(ids) == len(set(ids)) == 12 and all(r["status"] == "ok" for r in rows)
    prompt_ids = [r["trial_id"] for r in lines(retried.run_dir / "prompts.jsonl")]
    assert sorted(prompt_ids) == sorted(ids), "each trial's prompt is saved once"


def test_other_errors_are_not_taken_for_memory(tmp_path, tiny_model_dir, monkeypatch):
    from evalkit.models import transformers_backend

    def broken(*args, **kwargs):
        raise RuntimeError("Expected all tensors to be on the same device")

    monkeypatch.setattr(transformers_backend, "run_prompt", broken)
    path = tiny_config(tmp_path, tiny_model_dir)
    with pytest.raises(RuntimeError, match="same device"):
        run_eval(load_config(path), path, quiet=True, write_report=False)


@pytest.mark.parametrize("exc, oom", [
    (torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), True),
    (MemoryError(), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1.2 GB)"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: 8 GB"), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),
])
def test_out_of_memory_is_recognised_by_type_and_allocator_message(exc, oom):
    assert is_out_of_memory(exc) is oom

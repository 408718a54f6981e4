"""Scheduling (evalkit/run/schedule.py): reuse groups, batches with out-of-memory halving, and the runner's
three paths (reuse, one at a time, batches) giving the same records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import write_config
from evalkit.run import schedule
from evalkit.config.schema import load_config
from evalkit.run.runner import run_eval
from evalkit.store.run_store import read_record_lines
from evalkit.types import Trial


def _trials() -> list[Trial]:
    # plan order is length-major inside a sample; depths deliberately unsorted
    return [
        Trial(f"{s}-{n}-{d}", "m", "t", n, d, s, seed=100 + s)
        for s in range(2) for n in (64, 128) for d in (0.5, 0.0, 1.0)
    ]  # fmt: skip


def test_reuse_groups_share_model_task_seed_and_length_in_ascending_depth() -> None:
    groups = schedule.reuse_groups(_trials())
    assert len(groups) == 4
    for group in groups:
        assert len({schedule.group_key(t) for t in group}) == 1
        assert [t.depth for t in group] == [0.0, 0.5, 1.0]


def test_out_of_memory_halves_the_batch_and_loses_no_trial() -> None:
    calls: list[int] = []

    def run_many(batch: list[Trial]) -> list[str]:
        calls.append(len(batch))
        if len(batch) > 2:  # simulate a device that fits two prompts
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [t.trial_id for t in batch]

    trials = _trials()
    done = list(schedule.run_in_batches(trials, "auto", run_many, start_size=lambda length, n: 5))
    assert sorted(done) == sorted(t.trial_id for t in trials) and len(done) == len(set(done))
    # length 64: 5 fails, 2 + 2 + 2; length 128 starts at the halved ceiling
    assert calls == [5, 2, 2, 2, 2, 2, 2]


def test_other_errors_and_single_trial_oom_are_not_swallowed() -> None:
    def broken(batch):
        raise ValueError("a bug")

    with pytest.raises(ValueError):
        list(schedule.run_in_batches(_trials(), 4, broken, start_size=lambda *_: 1))

    def no_room(batch):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        list(schedule.run_in_batches(_trials(), 4, no_room, start_size=lambda *_: 1))


def test_auto_batch_size_is_bounded(tiny_model_dir) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert schedule.auto_batch_size(model, "cpu", 256, trials=7) == 7  # a tiny model fits all of them
    assert schedule.auto_batch_size(model, "cpu", 10**9, trials=7) == 1


def _records(run_dir: Path) -> dict[str, dict]:
    return {r["trial_id"]: r for path in run_dir.glob("trials*.jsonl") for r in read_record_lines(path)}


def test_reuse_batches_and_plain_runs_record_the_same_results(tmp_path, tiny_model_dir, monkeypatch) -> None:
    from evalkit.models import transformers_backend as backend_module

    real_run_batch = backend_module.run_batch
    sizes: list[int] = []

    def small_device(loaded, prompts, *args, **kwargs):
        sizes.append(len(prompts))
        if len(prompts) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_run_batch(loaded, prompts, *args, **kwargs)

    monkeypatch.setattr(backend_module, "run_batch", small_device)
    monkeypatch.setattr(backend_module.TransformersBackend, "suggest_batch_size", lambda *args: 6)
    results = {}
    for name, changes in {"reuse": {}, "plain": {"reuse_prefix": False},
                          "batched": {"reuse_prefix": False, "batch_size": "auto"}}.items():  # fmt: skip
        path = write_config(
            tmp_path / f"{name}.yaml", output_dir=str(tmp_path / name), tasks=["passkey"], samples=2, seed=3,
            models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
            context_lengths=[128, 192], depths=[0.0, 0.5, 1.0], length_tolerance_tokens=6, **changes,
        )
        summary = run_eval(load_config(path), path, quiet=True, write_report=False)
        results[name] = _records(summary.run_dir)
    assert sizes[0] == 6 and max(sizes[1:]) == 3  # halved after the simulated out-of-memory error
    assert results["reuse"].keys() == results["plain"].keys() == results["batched"].keys()
    assert len(results["reuse"]) == 12
    assert len({r["prompt_tokens"] for r in results["plain"].values()}) > 2  # the tolerance makes batches padded
    for trial_id, plain in results["plain"].items():
        for other in (results["reuse"][trial_id], results["batched"][trial_id]):
            assert other["generated"] == plain["generated"]
            assert other["gold_logprob_sum"] == pytest.approx(plain["gold_logprob_sum"], abs=1e-4)
            assert other["regions"] == plain["regions"]

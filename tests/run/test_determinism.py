"""Determinism: the same config and seed give the same prompts (hash per trial) and the same records on CPU."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.config.schema import load_config
from evalkit.run.runner import run_eval

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread is fastest

TIMING_FIELDS = ("elapsed_s",)


def run(tmp_path: Path, model_dir: Path, name: str, seed: int) -> Path:
    path = write_config(
        tmp_path / f"{name}.yaml",
        models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
        tasks=["passkey", "fact"], context_lengths=[128, 176], depths=[0.0, 1.0], samples=2, seed=seed,
        output_dir=str(tmp_path / name), save_prompts=True,
    )
    return run_eval(load_config(path), path, quiet=True, write_report=False).run_dir


def rows(run_dir: Path, name: str = "trials.jsonl") -> list[dict]:
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


def test_same_config_and_seed_give_identical_prompts_and_records(tmp_path, tiny_model_dir):
    first, second = run(tmp_path, tiny_model_dir, "a", 11), run(tmp_path, tiny_model_dir, "b", 11)
    a, b = rows(first), rows(second)
    assert len(a) == 2 * 2 * 2 * 2
    assert [(r["trial_id"], r["prompt_sha256"]) for r in a] == [(r["trial_id"], r["prompt_sha256"]) for r in b]
    strip = lambda rs: [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in rs]  # noqa: E731
    assert strip(a) == strip(b)
    # the recorded hash is the hash of the very ids the model saw
    for saved, record in zip(rows(first, "prompts.jsonl"), a, strict=True):
        ids = saved["input_ids"]
        assert saved["trial_id"] == record["trial_id"]
        assert hashlib.sha256(struct.pack(f"<{len(ids)}i", *ids)).hexdigest() == record["prompt_sha256"]
    assert rows(first, "prompts.jsonl") == rows(second, "prompts.jsonl")


def test_another_seed_gives_other_prompts(tmp_path, tiny_model_dir):
    a, c = rows(run(tmp_path, tiny_model_dir, "a", 11)), rows(run(tmp_path, tiny_model_dir, "c", 12))
    assert len({r["prompt_sha256"] for r in a} & {r["prompt_sha256"] for r in c}) == 0
    assert [r["needle"] for r in a] != [r["needle"] for r in c]

"""Hand-built run directories for report tests: records with TrialRecord defaults filled in."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from evalkit.types import TrialRecord

MODEL = "org/tiny-model"
TASK = "passkey"
# (context_length, depth) -> (correct, n): at 2048 tokens the middle is lost.
GRID = {
    (1024, 0.0): (10, 10), (1024, 0.5): (9, 10), (1024, 1.0): (10, 10),
    (2048, 0.0): (10, 10), (2048, 0.5): (4, 10), (2048, 1.0): (9, 10),
}


def make_record(**overrides: Any) -> dict[str, Any]:
    """A TrialRecord as ``dataclasses.asdict`` writes it; ``overrides`` replace any field."""
    values: dict[str, Any] = dict(
        trial_id="t0", status="ok", model=MODEL, model_revision="abc123", task=TASK,
        context_length=1024, prompt_tokens=1024, length_tolerance_tokens=0, depth=0.5,
        achieved_depth=0.5, sample=0, seed=1, needle="The pass key is 12345.",
        question="What is the pass key?", gold_answer="12345", generated="12345",
        correct=True, exact_match=True, gold_logprob_sum=-0.2, gold_logprob_mean=-0.1,
        gold_first_token_is_argmax=True, gold_tokens=2,
        regions={"preamble": [0, 10], "context_before": [10, 500], "needle": [500, 510],
                 "context_after": [510, 1000], "question": [1000, 1024]},
        needle_token_start=500, needle_token_end=510, prompt_sha256="0" * 64, elapsed_s=0.01,
    )
    values.update(overrides)
    return dataclasses.asdict(TrialRecord(**values))


def write_header(run_dir: Path, **overrides: Any) -> Path:
    """Write ``run_dir/header.json`` in the store's format."""
    header = {
        "evalkit_version": "0.1.0", "config": {"models": [MODEL], "tasks": [TASK]},
        "config_hash": "cafe1234", "config_path": "configs/grid.yaml", "seed": 7,
        "started_at": "2025-01-01T00:00:00+00:00",
        "versions": {"python": "3.11.7", "torch": "2.5.0", "transformers": "5.0.0"},
        "models": {MODEL: "abc123"},
    }
    header.update(overrides)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "header.json"
    path.write_text(json.dumps(header), encoding="utf-8")
    return path


def write_records(run_dir: Path, records: list[dict[str, Any]], name: str = "trials.jsonl",
                  tail: str = "") -> Path:
    """Write ``records`` one JSON object per line, then ``tail`` verbatim (e.g. a torn line)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / name
    text = "".join(json.dumps(r) + "\n" for r in records) + tail
    path.write_text(text, encoding="utf-8")
    return path


def grid_records(model: str = MODEL, task: str = TASK, grid: dict | None = None) -> list[dict[str, Any]]:
    """Records of ``grid`` ((length, depth) -> (correct, n)): the first ``correct`` samples are right."""
    records = []
    for (length, depth), (correct, n) in (grid or GRID).items():
        for sample in range(n):
            right = sample < correct
            records.append(make_record(
                trial_id=f"{model}|{task}|{length}|{depth}|{sample}", model=model, task=task,
                context_length=length, prompt_tokens=length, depth=depth, achieved_depth=depth,
                sample=sample, correct=right, exact_match=right and sample % 2 == 0,
                generated="12345" if right else "I don't know", gold_logprob_mean=-0.5 if right else -3.0,
            ))
    return records


def write_grid_run(run_dir: Path, model: str = MODEL, task: str = TASK) -> Path:
    """A complete run directory of ``GRID`` for one model and task."""
    write_header(run_dir, models={model: "abc123"})
    write_records(run_dir, grid_records(model, task))
    return run_dir


HOSTILE_NEEDLE = "<script>document.title='pwned'</script>The pass key is 12345."
HOSTILE_OUTPUT = "<img src=x onerror=\"document.body.setAttribute('data-pwned','1')\"> no idea"
DEMO_DEPTHS = (0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 1.0)
DEMO_LENGTHS = (1024, 2048, 4096, 8192)


def demo_grid(middle_loss: float, samples: int = 20) -> dict[tuple[int, float], tuple[int, int]]:
    """A "lost in the middle" grid: accuracy falls towards 50% depth, more at longer lengths."""
    grid = {}
    for step, length in enumerate(DEMO_LENGTHS):
        strength = step / (len(DEMO_LENGTHS) - 1)
        for depth in DEMO_DEPTHS:
            closeness = 1.0 - abs(depth - 0.5) * 2.0  # 1 at the middle, 0 at both ends
            accuracy = max(0.0, 1.0 - middle_loss * strength * closeness - 0.05 * strength)
            grid[(length, depth)] = (round(accuracy * samples), samples)
    return grid


def write_demo_runs(base: Path) -> list[Path]:
    """Two run directories (two models) for a full report: hostile text, controls, a trust_remote_code run."""
    runs = []
    for name, model, loss in (("smollm2-run", "HuggingFaceTB/SmolLM2-135M-Instruct", 0.9),
                              ("qwen-run", "Qwen/Qwen2.5-0.5B-Instruct", 0.4)):
        run_dir = base / name
        write_header(run_dir, models={model: "main"}, trust_remote_code={model: model.startswith("Qwen")},
                     config={"models": [model], "tasks": [TASK]})
        records = grid_records(model, TASK, demo_grid(loss))
        # the example-trials table shows wrong answers from the longest length near 50% depth first
        hostile = next(i for i, r in enumerate(records) if not r["correct"] and r["context_length"] == DEMO_LENGTHS[-1]
                       and r["depth"] == 0.5)
        records[hostile] = {**records[hostile], "needle": HOSTILE_NEEDLE, "generated": HOSTILE_OUTPUT}
        for control, right in (("closed_book", 1), ("oracle", 19)):
            for sample in range(20):
                records.append(make_record(
                    trial_id=f"{model}|{control}|{sample}", model=model, context_length=1024, depth=0.0,
                    sample=sample, correct=sample < right, control=control))
        write_records(run_dir, records)
        runs.append(run_dir)
    return runs

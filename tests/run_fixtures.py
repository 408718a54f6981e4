"""Shared by run tests: a small eval config on a tiny model, and the records of a run directory."""

from __future__ import annotations

from pathlib import Path

from conftest import write_config
from evalkit.store.run_store import read_record_lines


def tiny_config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    fields = dict(
        models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
        tasks=["passkey"], context_lengths=[128, 192], depths=[0.0, 0.5, 1.0], samples=2, seed=7,
        output_dir=str(tmp_path / "run"),
    )
    fields.update(changes)
    return write_config(tmp_path / "cfg.yaml", **fields)


def records(run_dir: Path) -> list[dict]:
    return [r for path in sorted(run_dir.glob("trials*.jsonl")) for r in read_record_lines(path)]

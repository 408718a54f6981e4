"""Backend choice and capabilities (evalkit/run/backend_checks.py): refused by `validate` and `run` before
anything is written, naming the backend and the option."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from evalkit.cli import main
from evalkit.models import backends
from evalkit.models.transformers_backend import TransformersBackend
from run_fixtures import tiny_config


class NoCaptureBackend(TransformersBackend):
    """A backend that cannot capture attention, reuse a prefix or batch (as a served one might)."""

    name = "no-capture"
    capabilities = dataclasses.replace(
        TransformersBackend.capabilities, attention_capture=False, prefix_reuse=False, batching=False
    )


@pytest.fixture
def registry(monkeypatch):
    """The registry with the test backend added (patched for this test only, no shared state changed)."""
    monkeypatch.setattr(backends, "BACKENDS", {**backends.BACKENDS, NoCaptureBackend.name: NoCaptureBackend})


def _config(tmp_path: Path, model_dir: Path, backend: str, **changes) -> Path:
    model = {"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8, "backend": backend}
    return tiny_config(tmp_path, model_dir, models=[model], context_lengths=[128], samples=1, **changes)


def _refused(capsys, tmp_path: Path, config: Path, *parts: str) -> None:
    """`validate` and `run` both exit 2 with one line holding ``parts``; no run directory appears."""
    for command in (["validate", str(config)], ["run", str(config), "--quiet"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        (line,) = err.strip().splitlines()
        assert line.startswith(f"error: {config}: ") and "Traceback" not in err
        for part in parts:
            assert part in line, (command, line)
        assert not (tmp_path / "run").exists(), f"{command[0]} wrote before the backend was checked"


def test_capture_on_a_backend_without_it_is_refused_before_the_run_dir_exists(tmp_path, tiny_model_dir, capsys,
                                                                                registry) -> None:
    path = _config(tmp_path, tiny_model_dir, "no-capture", attention={"capture": True})
    _refused(capsys, tmp_path, path, "attention.capture", "'no-capture'", "cannot capture attention",
             "attention.capture: false")


@pytest.mark.parametrize("changes, field", [({"reuse_prefix": True}, "reuse_prefix"),
                                            ({"reuse_prefix": False, "batch_size": 4}, "batch_size")])
def test_reuse_or_batches_asked_of_a_backend_without_them_are_refused(tmp_path, tiny_model_dir, capsys, registry,
                                                                       changes, field) -> None:
    path = _config(tmp_path, tiny_model_dir, "no-capture", **changes)
    _refused(capsys, tmp_path, path, f"{field}:", "'no-capture'", "models[0]")


def test_unknown_backend_lists_the_known_ones(tmp_path, tiny_model_dir, capsys) -> None:
    path = _config(tmp_path, tiny_model_dir, "vllm")
    _refused(capsys, tmp_path, path, "models[0].backend", "'vllm'", "transformers")


def test_a_backend_with_what_the_config_needs_runs(tmp_path, tiny_model_dir, capsys, registry) -> None:
    """reuse_prefix is on by default: not asked for explicitly, a backend without it just runs without it."""
    path = _config(tmp_path, tiny_model_dir, "no-capture", depths=[0.0, 1.0])
    assert main(["run", str(path), "--quiet", "--no-report"]) == 0
    assert (tmp_path / "run" / "trials.jsonl").read_text().count("\n") == 2


def test_an_arm_inside_the_model_on_a_backend_without_capture_is_refused(tmp_path, tiny_model_dir, capsys,
                                                                          registry) -> None:
    path = _config(tmp_path, tiny_model_dir, "no-capture",
                   mitigations=["none", {"arm": "mask_heads", "name": "rand", "random_k": 1}])
    _refused(capsys, tmp_path, path, "mitigations:", "'no-capture'", "rand", "backend: transformers")

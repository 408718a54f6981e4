"""The run header says where a run ran: the machine, each model's template, special tokens and size, the end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import types

import pytest

from run_fixtures import tiny_config
from evalkit.config.schema import load_config
from evalkit.models.base import BackendInfo
from evalkit.run import environment
from evalkit.run.environment import chat_template_sha256, hardware_facts, model_facts, special_tokens
from evalkit.run.runner import run_eval
from evalkit.store.format import read_header
from evalkit.store.run_facts import SpecialToken, run_facts


def test_a_tiny_run_records_hardware_model_facts_and_its_end(tmp_path, tiny_model_dir, smollm2_tokenizer,
                                                              single_thread):
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.5], samples=1)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    header = read_header(summary.run_dir)
    facts = run_facts(header)

    assert facts.hardware is not None and facts.hardware.cpu_cores >= 1
    assert facts.hardware.ram_bytes > 2**26 and facts.hardware.cpu_model
    (model,) = facts.models.values()
    assert list(facts.models) == [str(tiny_model_dir)]
    expected = hashlib.sha256(smollm2_tokenizer.chat_template.encode("utf-8")).hexdigest()
    assert model.chat_template_sha256 == expected
    # the tiny Llama of conftest, counted from its saved weights
    from transformers import AutoModelForCausalLM

    assert model.parameters == sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(tiny_model_dir).parameters())
    assert model.parameters > 0
    roles = {t.role: t for t in model.special_tokens}
    assert roles["eos"] == SpecialToken("eos", smollm2_tokenizer.eos_token, smollm2_tokenizer.eos_token_id)

    # the end is written when the run ends, after the start, and the evaluation time is the call's wall time
    started = dt.datetime.fromisoformat(header["started_at"])
    finished = dt.datetime.fromisoformat(facts.finished_at)
    assert started <= finished
    assert 0 < facts.eval_seconds <= summary.elapsed_s + 1
    assert facts.eval_seconds >= (finished - started).total_seconds() - 1


def test_a_resume_adds_its_seconds_and_moves_the_end(tmp_path, tiny_model_dir, single_thread):
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.0, 1.0], samples=1)
    first = run_eval(load_config(path), path, limit=1, quiet=True, write_report=False)
    before = run_facts(read_header(first.run_dir))
    second = run_eval(load_config(path), path, quiet=True, write_report=False)
    after = run_facts(read_header(second.run_dir))
    assert second.ran == 1
    assert after.eval_seconds == pytest.approx(before.eval_seconds + second.elapsed_s, abs=0.5)
    assert after.finished_at >= before.finished_at


def test_a_run_that_fails_before_its_end_records_no_end(tmp_path, tiny_model_dir, monkeypatch, single_thread):
    from evalkit.run import runner

    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.0, 1.0], samples=1)
    real = runner.run_trial
    calls = []

    def fail_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "run_trial", fail_second)
    with pytest.raises(KeyboardInterrupt):
        run_eval(load_config(path), path, quiet=True, write_report=False)
    header = json.loads((tmp_path / "run" / "header.json").read_text())
    facts = run_facts(header)
    assert facts.finished_at is None and facts.eval_seconds is None
    assert facts.hardware is not None and len(facts.models) == 1  # written with the first record


def test_template_hash_is_the_sha256_of_its_text_and_none_without_one():
    assert chat_template_sha256("{{ messages }}") == hashlib.sha256(b"{{ messages }}").hexdigest()
    assert chat_template_sha256(None) is None and chat_template_sha256("") is None
    named = {"default": "a", "tool_use": "b"}
    assert chat_template_sha256(named) == hashlib.sha256(json.dumps(named, sort_keys=True).encode()).hexdigest()


def test_special_tokens_keep_the_roles_the_tokenizer_sets(smollm2_tokenizer):
    tokens = special_tokens(smollm2_tokenizer)
    assert [t.role for t in tokens] == [r for r in ("bos", "eos", "pad", "unk")
                                        if getattr(smollm2_tokenizer, f"{r}_token") is not None]
    for token in tokens:
        assert smollm2_tokenizer.convert_tokens_to_ids(token.text) == token.id
    bare = types.SimpleNamespace(eos_token="</s>", eos_token_id=2, chat_template=None)
    assert special_tokens(bare) == (SpecialToken("eos", "</s>", 2),)
    info = BackendInfo("m", "rev", None, bare, (2,))
    assert model_facts(info).parameters is None and model_facts(info).chat_template_sha256 is None


def test_gpus_are_read_from_torch_and_the_driver_from_proc(monkeypatch, tmp_path):
    import torch

    props = types.SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_000_000_000)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: props)
    driver = tmp_path / "version"
    driver.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    monkeypatch.setattr(environment, "NVIDIA_DRIVER", driver)
    hardware = hardware_facts()
    assert [g.name for g in hardware.gpus] == [props.name] * 2
    assert hardware.gpus[0].memory_bytes == props.total_memory
    assert hardware.gpu_driver == "550.54.15"


def test_no_gpu_records_none_and_an_unreadable_cpuinfo_falls_back(monkeypatch, tmp_path):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(environment, "CPUINFO", tmp_path / "missing")
    hardware = hardware_facts()
    assert hardware.gpus == () and hardware.gpu_driver is None
    assert hardware.cpu_cores >= 1

"""attention.inner and models[*].attn_implementation agree by construction: with capture on, inner decides."""

from __future__ import annotations

import pytest
from run_fixtures import records, tiny_config

from evalkit.cli import main


@pytest.fixture(scope="module")
def tiny_gemma2_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random-init Gemma 2 (logit softcap: only its eager kernel computes it) with the SmolLM2 tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma2Config

    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
                          sliding_window=64, attn_logit_softcapping=15.0, max_position_embeddings=1024,
                          bos_token_id=smollm2_tokenizer.bos_token_id, eos_token_id=smollm2_tokenizer.eos_token_id,
                          pad_token_id=smollm2_tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("tiny-gemma2")
    AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def _model(folder, **fields) -> list[dict]:
    return [{"name": str(folder), "dtype": "float32", "device": "cpu", "max_new_tokens": 8, **fields}]


@pytest.mark.parametrize("inner", ["eager", "auto"])
def test_gemma2_eager_capture_runs_after_validate_says_ok(tmp_path, tiny_gemma2_dir, inner):
    # attn_implementation is left at its default (sdpa): attention.inner decides while capture is on
    config = tiny_config(tmp_path, tiny_gemma2_dir, models=_model(tiny_gemma2_dir), context_lengths=[128],
                         depths=[0.5], samples=1, attention={"capture": True, "inner": inner})
    assert main(["validate", str(config)]) == 0
    assert main(["run", str(config), "--quiet"]) == 0
    (record,) = records(tmp_path / "run")
    assert record["status"] == "ok" and (tmp_path / "run" / "attention" / f"{record['trial_id']}.npz").is_file()


def test_a_conflicting_attn_implementation_is_refused_by_validate(tmp_path, tiny_gemma2_dir, capsys):
    config = tiny_config(tmp_path, tiny_gemma2_dir, models=_model(tiny_gemma2_dir, attn_implementation="sdpa"),
                         context_lengths=[128], depths=[0.5], samples=1, attention={"capture": True, "inner": "eager"})
    assert main(["validate", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{config}: models[0].attn_implementation: 'sdpa' conflicts with attention.inner 'eager'" in line
    assert "remove attn_implementation or set it to 'eager'" in line and not (tmp_path / "run").exists()


def test_sdpa_inner_for_softcap_family_is_refused_by_validate(tmp_path, tiny_gemma2_dir, capsys):
    config = tiny_config(tmp_path, tiny_gemma2_dir, models=_model(tiny_gemma2_dir), context_lengths=[128],
                         depths=[0.5], samples=1, attention={"capture": True, "inner": "sdpa"})
    assert main(["validate", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{config}: attention.inner: " in line and "cannot load with 'sdpa'" in line and "use 'eager'" in line


def test_gemma2_on_default_sdpa_without_capture_is_refused_by_validate(tmp_path, tiny_gemma2_dir, capsys):
    config = tiny_config(tmp_path, tiny_gemma2_dir, models=_model(tiny_gemma2_dir), context_lengths=[128],
                         depths=[0.5], samples=1)
    assert main(["validate", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{config}: models[0].attn_implementation: " in line and "use 'eager'" in line

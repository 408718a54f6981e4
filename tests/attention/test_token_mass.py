"""``attention.tokens: true``: per-token mass from the capture pass, stored float16 beside the region arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from evalkit.attention import PARTITION
from evalkit.attention.capture_math import region_mass_argmax, region_mass_argmax_tokens
from evalkit.attention.token_mass import storage_bytes
from evalkit.models.transformers_backend import stored_layers
from evalkit.cli import main
from evalkit.config.schema import config_hash, load_config
from evalkit.errors import CaptureError
from evalkit.run.runner import run_eval
from evalkit.store.format import attention_path, read_trial_attention, save_trial_attention
from run_fixtures import records, tiny_config

ATTENTION_CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "attention.yaml")
TOKENS = {"capture": True, "decode_steps": 2, "bins": 4, "sink_tokens": 1, "tokens": True, "token_layers": [1]}


def test_token_mass_summed_over_a_span_is_the_head_mean_of_its_region_mass():
    torch.manual_seed(0)
    query, key = torch.randn(1, 4, 2, 8), torch.randn(1, 2, 37, 8)  # GQA: 4 query heads over 2 key heads
    bounds = torch.tensor([[[0, 1], [1, 12], [12, 30], [30, 37], [5, 9]]])
    mass, argmax, tokens = region_mass_argmax_tokens(query, key, bounds, 8**-0.5, lambda s, e: None, chunk_tokens=7)
    assert tokens.shape == (1, 2, 37)  # [B, Q, Lk]
    for r, (start, end) in enumerate(bounds[0].tolist()):
        torch.testing.assert_close(tokens[..., start:end].sum(-1), mass[..., r].mean(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(tokens.sum(-1), torch.ones(1, 2), atol=1e-5, rtol=0)
    plain = region_mass_argmax(query, key, bounds, 8**-0.5, lambda s, e: None, chunk_tokens=7)
    torch.testing.assert_close(plain[0], mass) and torch.testing.assert_close(plain[1], argmax)


def test_tokens_round_trip_through_the_run_directory_and_sum_to_the_captured_bins(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, attention=TOKENS, context_lengths=[128], depths=[0.5], samples=1)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    (record,) = records(summary.run_dir)
    att = read_trial_attention(attention_path(summary.run_dir, record["trial_id"]))
    tokens = record["prompt_tokens"]
    assert att.token_mass.dtype == np.float16 and att.token_mass.shape == (1, 3, tokens)  # [layers, rows, keys]
    assert att.token_layers == (1,)
    head_mean = att.mass[1].mean(0)  # layer 1: [rows, regions]
    for r, (start, end) in enumerate(att.spans.tolist()):
        if end <= tokens:  # prompt regions and every bin (``generated`` keys are not prompt tokens)
            sums = att.token_mass[0, :, start:end].astype(np.float64).sum(-1)
            np.testing.assert_allclose(sums, head_mean[:, r], atol=2e-3)
    np.testing.assert_allclose(att.token_mass[0, 0].astype(np.float64).sum(), 1.0, atol=2e-3)  # prefill row
    generated = head_mean[:, PARTITION.index("generated")]
    np.testing.assert_allclose(att.token_mass[0].astype(np.float64).sum(-1), 1.0 - generated, atol=3e-3)
    # rewritten and read again, the arrays are the same (float16 exactly)
    again = read_trial_attention(save_trial_attention(tmp_path / "copy", record["trial_id"], att))
    assert np.array_equal(again.token_mass, att.token_mass) and again.token_layers == (1,)


def test_arrays_without_tokens_read_as_before(tmp_path, tiny_model_dir):
    attention = {k: v for k, v in TOKENS.items() if k not in ("tokens", "token_layers")}
    path = tiny_config(tmp_path, tiny_model_dir, attention=attention, context_lengths=[128], depths=[0.5], samples=1)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    (record,) = records(summary.run_dir)
    att = read_trial_attention(attention_path(summary.run_dir, record["trial_id"]))
    assert att.token_mass is None and att.token_layers == ()
    with np.load(attention_path(summary.run_dir, record["trial_id"])) as data:
        assert "token_mass" not in data.files


def test_the_new_fields_leave_the_config_hash_of_existing_capture_runs_alone():
    # the literal: config_hash of configs/attention.yaml before attention.tokens existed (commit a3db80b); the
    # committed file now asks for tokens (and saved prompts), so the old one is that file with those at default
    old = ["attention.tokens=false", "attention.token_layers=[]", "save_prompts=false"]
    assert config_hash(load_config(ATTENTION_CONFIG, old)) == "5e2d6eb69c71c64c"
    assert config_hash(load_config(ATTENTION_CONFIG, old[1:] + ["attention.tokens=true"])) != "5e2d6eb69c71c64c"
    assert config_hash(load_config(ATTENTION_CONFIG)) != "5e2d6eb69c71c64c"


def test_storage_cost_and_layer_choice(tmp_path, tiny_model_dir, capsys):
    assert storage_bytes([1024, 2048], rows=5, layers=2) == 2 * 2 * 5 * 3072
    assert stored_layers(4, []) == (0, 1, 2, 3) and stored_layers(4, [3, 1]) == (3, 1)
    with pytest.raises(CaptureError, match=r"attention.token_layers: \[7\] not in this model's layers 0-3"):
        stored_layers(4, [7])
    path = tiny_config(tmp_path, tiny_model_dir, attention=TOKENS, context_lengths=[128, 256], depths=[0.5], samples=1)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "attention.tokens: per-token mass of 1 layers x 3 rows adds up to 2.3 kB over 2 trials" in out

"""benchmarks/attention_recheck.py and benchmarks/long_context_cpu.py: the independent last-row recomputation
agrees with eager attention on tiny models, and rechecks what a captured evalkit run stored."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from capture_fixtures import WINDOW, build_model
from run_fixtures import tiny_config
from conftest import benchmark_module

recheck = benchmark_module("attention_recheck")
long_context = benchmark_module("long_context_cpu")

PROMPT = 21  # longer than the sliding window (8) and than a chunk (5): both rules are exercised


def _eager_last_rows(model, ids: torch.Tensor) -> np.ndarray:
    """[layers, heads, L]: the last row of each layer's attention weights as eager attention returns them."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return torch.stack([weights[0, :, -1, :] for weights in out.attentions]).double().numpy()


def _gemma_query_scalar(model, scalar: int):
    """The fixtures' Gemma scale by query_pre_attn_scalar = head_dim: another value tells the two rules apart."""
    model.config.query_pre_attn_scalar = scalar
    for module in model.modules():
        if hasattr(module, "scaling"):
            module.scaling = scalar**-0.5
    return model


@pytest.mark.parametrize("family", ["llama", "gemma3", "gemma2", "qwen2"])
def test_chunked_recomputation_equals_eager_last_row(family, single_thread) -> None:
    model = build_model(family)
    if family.startswith("gemma"):
        model = _gemma_query_scalar(model, 24)
    ids = torch.randint(3, 256, (1, PROMPT), generator=torch.Generator().manual_seed(1))
    eager = _eager_last_rows(model, ids)
    probs = recheck.last_row_probabilities(model, ids[0].tolist(), chunk_tokens=5)
    assert probs.shape == eager.shape == (2, 4, PROMPT)
    np.testing.assert_allclose(probs, eager, atol=1e-5, rtol=0)
    assert eager.max() > 0.5  # peaky attention: a wrong key or scale would show
    rules = recheck.layer_rules(model.config)
    sliding = [layer for layer, rule in enumerate(rules) if rule.window is not None]
    assert bool(sliding) == (family != "llama")
    for layer in sliding:  # keys before the window get nothing, in eager as here
        assert rules[layer].window == WINDOW and not probs[layer, :, : PROMPT - WINDOW].any()


def test_region_masses_sum_each_half_open_span_and_nothing_past_the_prompt() -> None:
    probs = np.arange(12, dtype=np.float64).reshape(1, 2, 6)  # [layers, heads, keys]
    spans = np.array([[0, 2], [2, 6], [1, 1], [5, 9], [6, 8]])
    expected = [[[1, 14, 0, 5, 0], [13, 38, 0, 11, 0]]]
    np.testing.assert_array_equal(recheck.region_masses(probs, spans), expected)


def test_an_unmodelled_family_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="gpt2"):
        recheck.layer_rules(build_model("gpt2").config)


@pytest.fixture(scope="module")
def tiny_gemma3_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random Gemma 3 (a sliding layer of window 32, then a full one) with peaky attention, saved with the
    SmolLM2 tokenizer: the conftest's tiny Llama attends almost uniformly, so a wrong scale would hide in it."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.Gemma3TextConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128,
                                 num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                                 query_pre_attn_scalar=24, sliding_window=32, initializer_range=0.5,
                                 layer_types=["sliding_attention", "full_attention"], pad_token_id=0,
                                 bos_token_id=smollm2_tokenizer.bos_token_id,
                                 eos_token_id=smollm2_tokenizer.eos_token_id)  # fmt: skip
    model = tf.Gemma3ForCausalLM(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith(("q_norm.weight", "k_norm.weight")):  # wider gains: logits far from uniform
                parameter.normal_(1.0, 0.5)
    folder = tmp_path_factory.mktemp("tiny-gemma3")
    model.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def captured_run(tmp_path_factory, tiny_gemma3_dir):
    """The script run end to end on a tiny Gemma 3: one evalkit run (a child process) at 128 tokens, rechecked."""
    folder = tmp_path_factory.mktemp("long")
    config = tiny_config(folder, tiny_gemma3_dir, context_lengths=[96], depths=[0.0, 0.5, 1.0], samples=1,
                         save_prompts=True, attention={"capture": True, "bins": 4})
    code = long_context.main(["--config", str(config), "--lengths", "128", "--output-dir", str(folder / "out"),
                              "--chunk-tokens", "50"])  # fmt: skip
    return folder / "out", code


def _rows(out: str) -> dict[float, list[str]]:
    """Depth -> cells of each table row."""
    rows = [line.strip("|").split("|") for line in out.splitlines() if re.match(r"\| \d+ \|", line)]
    return {float(cells[2]): [c.strip() for c in cells] for cells in rows}


def test_a_captured_tiny_run_is_rechecked_within_tolerance(captured_run, capsys) -> None:
    out_dir, code = captured_run
    assert code == 0 and (out_dir / "len_128" / "header.json").is_file()
    assert long_context.main(["--recheck-only", str(out_dir)]) == 0
    out = capsys.readouterr().out
    rows = _rows(out)
    assert sorted(rows) == [0.0, 0.5, 1.0] and all(cells[0] == "128" for cells in rows.values())
    assert all(float(cells[4]) > 0 and float(cells[6]) < 1e-4 for cells in rows.values())  # RSS read, masses agree
    assert out.strip().splitlines()[-1].endswith("(within 0.0001: yes)")


def test_a_perturbed_stored_mass_is_reported_as_a_failure(captured_run, tmp_path, capsys) -> None:
    from evalkit.store.format import attention_path, read_trial_attention, save_trial_attention

    copy = shutil.copytree(captured_run[0] / "len_128", tmp_path / "len_128")
    trial = sorted(p.stem for p in (copy / "attention").glob("*.npz"))[0]
    attention = read_trial_attention(attention_path(copy, trial))
    attention.mass[1, 2, 0, attention.region_names.index("needle")] += 1e-3
    save_trial_attention(copy, trial, attention)
    assert long_context.main(["--recheck-only", str(copy)]) == 1
    out = capsys.readouterr().out
    differences = sorted(float(cells[6]) for cells in _rows(out).values())
    assert differences[-1] == pytest.approx(1e-3, rel=1e-2) and differences[-2] < 1e-4
    assert out.strip().splitlines()[-1].endswith("(within 0.0001: no)")


def test_a_run_without_saved_prompts_is_refused_naming_the_setting(captured_run, tmp_path) -> None:
    copy = shutil.copytree(captured_run[0] / "len_128", tmp_path / "len_128")
    for path in copy.glob("prompts*.jsonl"):
        path.unlink()
    with pytest.raises(SystemExit, match="save_prompts: true"):
        long_context.main(["--recheck-only", str(copy)])

"""Batching (evalkit/models/batch.py): the same answers and log-probs as one prompt at a time.

Tiny random-init float32 models; prompts of unequal length (left padding) and of equal length (none).
"""

from __future__ import annotations

import pytest
import torch

from evalkit.models import load_from_objects, run_prompt
from evalkit.models.batch import batch_layout, run_batch
from evalkit.attention.capture import AttentionCapture

VOCAB = 49152
NEW_TOKENS = 6
_DECODER = {"vocab_size": VOCAB, "max_position_embeddings": 512, "initializer_range": 0.2,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}  # fmt: skip


def _config(family: str):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    gqa = {"num_attention_heads": 4, "num_key_value_heads": 2}
    return {
        "llama": lambda: LlamaConfig(**_DECODER, **gqa),
        "qwen2": lambda: Qwen2Config(**_DECODER, **gqa),
        "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                                   initializer_range=0.2, bos_token_id=0, eos_token_id=0),  # fmt: skip
        "mistral-sw16": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=16),
        # Gemma 3 (the built-in gemma3-270m's family): sliding and full layers mixed, window shorter than the prompts
        "gemma3-sw16": lambda: Gemma3TextConfig(
            **_DECODER, **gqa, head_dim=16, sliding_window=16, layer_types=["sliding_attention", "full_attention"],
            pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False),
    }[family]()


@pytest.fixture(scope="module", params=["llama", "gpt2", "qwen2", "mistral-sw16", "gemma3-sw16"])
def loaded(request, smollm2_tokenizer):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(request.param), dtype=torch.float32)
    model.generation_config.eos_token_id = None
    return load_from_objects(model, smollm2_tokenizer, name=f"tiny-{request.param}")


def _ids(count: int, seed: int) -> list[int]:
    return torch.randint(3, VOCAB, (count,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.mark.parametrize("lengths", [[40, 40, 40], [40, 31, 47, 12]])
def test_batch_matches_one_prompt_at_a_time(loaded, lengths) -> None:
    prompts = [_ids(n, seed=i) for i, n in enumerate(lengths)]
    golds = [_ids(1 + i % 3, seed=100 + i) for i in range(len(prompts))]
    single = [run_prompt(loaded, p, g, NEW_TOKENS, ()) for p, g in zip(prompts, golds)]
    batched = run_batch(loaded, prompts, golds, NEW_TOKENS, ())
    assert len({o.generated_token_ids for o in single}) > 1, "degenerate model"
    for a, b in zip(single, batched):
        assert b.generated_token_ids == a.generated_token_ids
        assert b.gold_logprob_sum == pytest.approx(a.gold_logprob_sum, abs=1e-4)
        assert b.gold_first_token_is_argmax == a.gold_first_token_is_argmax


def test_past_its_window_the_gold_forward_feeds_only_the_gold(loaded) -> None:
    """Sliding windows shorter than the prompts: the cache is put back after the gold (forward.CacheRollback)
    instead of a second forward over prompt + gold; answers as one prompt at a time (above)."""
    if "sw16" not in loaded.name:
        pytest.skip("a cache within its window is cropped")
    prompts, golds = [_ids(40, seed=1), _ids(31, seed=2)], [_ids(3, seed=3), _ids(2, seed=4)]
    lengths: list[int] = []
    handle = loaded.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    try:
        run_batch(loaded, prompts, golds, NEW_TOKENS, ())
    finally:
        handle.remove()
    assert lengths == [40, 2] + [1] * (NEW_TOKENS - 1)  # the left-padded prompts, gold[:-1] of the longest, decode


def test_batch_stops_each_prompt_at_its_own_stop_token(loaded) -> None:
    prompts = [_ids(30, seed=7), _ids(22, seed=8)]
    free = [run_prompt(loaded, p, [5], NEW_TOKENS, ()).generated_token_ids for p in prompts]
    stop = free[0][2]
    expected = [run_prompt(loaded, p, [5], NEW_TOKENS, [stop]).generated_token_ids for p in prompts]
    got = [o.generated_token_ids for o in run_batch(loaded, prompts, [[5], [5]], NEW_TOKENS, [stop])]
    assert got == expected and len(got[0]) <= 3


@pytest.mark.parametrize("family", ["qwen2", "gemma3-sw16"])
def test_capture_spans_shift_by_the_left_pad(smollm2_tokenizer, family) -> None:
    """Region masses of a padded prompt equal its unbatched masses once spans and rows move by its pad."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family), dtype=torch.float32)
    loaded = load_from_objects(model, smollm2_tokenizer)
    prompts = [_ids(48, seed=1), _ids(30, seed=2)]
    regions = [[0, 5], [5, 20], [20, 30]]  # prompt positions, valid in both prompts
    layout = batch_layout(prompts)
    capture = AttentionCapture.attach(model)
    try:
        alone = []
        for prompt in prompts:
            rec = capture.record(torch.tensor([[len(prompt) - 1, 25]]), torch.tensor([regions]))
            run_prompt(loaded, prompt, [5], 1, (), prefill_context=rec)
            alone.append(rec.mass[0])
        rows = torch.tensor([[layout.length_tokens - 1, pad + 25] for pad in layout.pads])
        spans = torch.tensor([[[pad + s, pad + e] for s, e in regions] for pad in layout.pads])
        rec = capture.record(rows, spans)
        run_batch(loaded, prompts, [[5], [5]], 1, (), prefill_context=rec)
    finally:
        capture.detach()
    for b in range(2):
        assert torch.allclose(rec.mass[b], alone[b], atol=1e-5)

"""TransformersBackend (evalkit/models/transformers_backend.py): the runner's one way into a transformers model.

Tiny random-init float32 models with the SmolLM2 vocabulary. References: ``generate(do_sample=False)`` and one
teacher-forced forward over prompt + gold without a cache.
"""

from __future__ import annotations

import math

import pytest
import torch

from evalkit.models import TransformersBackend, TrialRequest, load_from_objects

VOCAB = 49152
NEW_TOKENS = 4
_DECODER = {"vocab_size": VOCAB, "max_position_embeddings": 512, "initializer_range": 0.2,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}  # fmt: skip


def _model(family: str, window: int = 48):
    from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig, MistralConfig

    gqa = {"num_attention_heads": 4, "num_key_value_heads": 2}
    config = {
        "llama": lambda: LlamaConfig(**_DECODER, **gqa),
        "mistral": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=window),
        # gemma3_text: a sliding layer and a full one (layer_types), as Gemma 3 mixes them 5:1
        "gemma3": lambda: Gemma3TextConfig(
            **_DECODER, **gqa, head_dim=16, sliding_window=window, layer_types=["sliding_attention", "full_attention"],
            pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False,
        ),
    }[family]()
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    return model


def _backend(family: str, tokenizer, window: int = 48) -> TransformersBackend:
    return TransformersBackend(load_from_objects(_model(family, window), tokenizer, name=f"tiny-{family}"))


def _ids(count: int, seed: int) -> list[int]:
    return torch.randint(3, VOCAB, (count,), generator=torch.Generator().manual_seed(seed)).tolist()


def _reference(model, prompt: list[int], gold: list[int]) -> tuple[list[int], float]:
    """(greedy answer from generate, gold log-prob sum from one full forward)."""
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
                             do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=None, pad_token_id=0)  # fmt: skip
        logits = model(torch.tensor([prompt + gold]), use_cache=False).logits[0].float()
    rows = logits.log_softmax(-1)[len(prompt) - 1 : len(prompt) - 1 + len(gold)]  # [G, V]
    return out[0, len(prompt) :].tolist(), float(rows.gather(-1, torch.tensor(gold)[:, None]).sum())


def _request(prompt: list[int], gold: list[int], prefix_tokens: int = 0) -> TrialRequest:
    return TrialRequest(tuple(prompt), tuple(gold), NEW_TOKENS, prefix_tokens=prefix_tokens)


def _forward_lengths(model, call):
    lengths: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        return lengths, call()
    finally:
        handle.remove()


@pytest.mark.parametrize("family, window, limit", [("llama", 48, math.inf), ("mistral", 48, 48), ("gemma3", 48, 48),
                                                   ("gemma3", 160, 160)])  # fmt: skip
def test_crop_limit_is_known_before_the_first_trial(smollm2_tokenizer, family, window, limit) -> None:
    """Probed from the cache the model builds (its config's sliding windows and layer types), not learned."""
    assert _backend(family, smollm2_tokenizer, window).memory.crop_limit == limit


@pytest.mark.parametrize("family", ["gemma3", "mistral"])
def test_a_prompt_past_the_window_after_a_shorter_one_matches_generate(smollm2_tokenizer, family) -> None:
    """D18: a short prompt (draft path, prefix kept) then one past the sliding window on the same shared prefix.

    Gemma 3 refused the draft path's crop there ("Call activate_past_recording before crop"); such a prompt
    must take the classic path and still answer as ``generate`` does.
    """
    backend = _backend(family, smollm2_tokenizer, window=48)
    shared = _ids(20, seed=1)
    prompts = [shared + _ids(12, seed=2), shared + _ids(44, seed=3), shared + _ids(12, seed=4)]  # 32, 64, 32 tokens
    gold = _ids(3, seed=5)
    outputs = [backend.run([_request(p, gold, prefix_tokens=len(shared))])[0] for p in prompts]
    answers = set()
    for prompt, out in zip(prompts, outputs):
        expected, logprob = _reference(backend.loaded.model, prompt, gold)
        assert list(out.generated_token_ids) == expected
        assert out.gold_logprob_sum == pytest.approx(logprob, abs=1e-4)
        answers.add(tuple(expected))
    assert len(answers) > 1, "degenerate model: every prompt answers the same"


def test_a_trial_is_fed_the_same_whatever_ran_before(smollm2_tokenizer) -> None:
    """D15: the first trial of a fresh backend drafts like any later one, and the draft's length does not follow
    the learned tail, so a trial's prompt forward and gold log-prob are the same in a resumed run."""
    backend = _backend("llama", smollm2_tokenizer)
    model = backend.loaded.model
    prompt, other = _ids(40, seed=7), _ids(40, seed=8)
    gold = _ids(2, seed=9)
    fresh_lengths, fresh = _forward_lengths(model, lambda: backend.run([_request(prompt, gold)])[0])
    assert fresh_lengths[0] > len(prompt), "a fresh backend's first trial should take the draft path"
    taught, _ = _reference(model, other, gold)
    backend.run([_request(other, taught[:2])])  # its answer starts with its gold: the backend learns the tail
    assert backend.memory.tail == tuple(taught[2:])
    later_lengths, later = _forward_lengths(model, lambda: backend.run([_request(prompt, gold)])[0])
    assert later_lengths[0] == fresh_lengths[0]  # one prompt + draft forward of the same length
    assert later.gold_logprob_sum == fresh.gold_logprob_sum and later.generated_token_ids == fresh.generated_token_ids
    backend.reset()  # a new group: nothing learned is kept but the crop limit
    assert backend.memory.tail == () and backend.memory.crop_limit == math.inf


def test_capture_request_without_an_attached_recorder_is_refused(smollm2_tokenizer) -> None:
    from evalkit.models import CaptureRequest

    backend = _backend("llama", smollm2_tokenizer)
    request = TrialRequest(tuple(_ids(10, 1)), (5,), 2, capture=CaptureRequest(((0, 10),), 0))
    with pytest.raises(ValueError, match="none was attached"):
        backend.run([request])

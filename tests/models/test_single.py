"""One-prompt path (evalkit/models/single.py, classic.py) on tiny random-init models of several families.

Every model is built offline from a config (float32, eval, seeded) with the SmolLM2 vocabulary size,
so the SmolLM2 tokenizer fixture decodes its ids. Ground truths are a separate teacher-forced forward
over prompt + gold, and ``model.generate(do_sample=False)``.
"""

from __future__ import annotations

import pytest
import torch

from evalkit.models import classic, load_from_objects, run_prompt
from evalkit.models.draft import AnswerMemory
from evalkit.models.forward import can_crop, can_roll_back

VOCAB = 49152  # SmolLM2 tokenizer size
PROMPT_TOKENS = 40
NEW_TOKENS = 8
_SMALL = {"vocab_size": VOCAB, "max_position_embeddings": 512, "initializer_range": 0.2}
_DECODER = {**_SMALL, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}


def _config(family: str):
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

    gqa = {"num_attention_heads": 4, "num_key_value_heads": 2}
    return {
        "llama": lambda: LlamaConfig(**_DECODER, **gqa),
        "qwen2": lambda: Qwen2Config(**_DECODER, **gqa),
        "qwen3": lambda: Qwen3Config(**_DECODER, **gqa, head_dim=16),
        "gpt2": lambda: GPT2Config(
            vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=512,
            initializer_range=0.2, bos_token_id=0, eos_token_id=0,
        ),
        # window larger than prompt + gold: the sliding cache layers are cropped like full ones
        "mistral-sw64": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=64),
        # window smaller than the prompt: the cache cannot be rolled back, gold uses the fallback forward
        "mistral-sw16": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=16),
        # Gemma 3 (gemma3_text): sliding and full layers mixed via layer_types, as in the real models
        "gemma3-sw64": lambda: _gemma3(sliding_window=64),
        "gemma3-sw16": lambda: _gemma3(sliding_window=16),
    }[family]()


def _gemma3(sliding_window: int):
    from transformers import Gemma3TextConfig

    return Gemma3TextConfig(
        **_DECODER, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"], pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False,  # tied, Gemma's scaled embeddings make a tiny random model repeat one token
    )


FAMILIES = ["llama", "qwen2", "qwen3", "gpt2", "mistral-sw64", "mistral-sw16", "gemma3-sw64", "gemma3-sw16"]
# the window is shorter than the prompt: the cache cannot be cut back, every trial takes the classic path
SHORT_WINDOW = {"tiny-mistral-sw16", "tiny-gemma3-sw16"}


@pytest.fixture(scope="module", params=FAMILIES)
def loaded(request, smollm2_tokenizer):
    """A tiny random-init model of one family, wrapped as a LoadedModel, with no default eos."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(request.param), dtype=torch.float32)
    model.generation_config.eos_token_id = None  # tests choose their stop ids explicitly
    model.generation_config.pad_token_id = 0
    return load_from_objects(model, smollm2_tokenizer, name=f"tiny-{request.param}")


def _ids(count: int, seed: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (count,), generator=generator).tolist()


def _reference_logprobs(model, prompt: list[int], gold: list[int]) -> torch.Tensor:
    """Log-probs of each gold token from one full forward over prompt + gold (no cache)."""
    with torch.no_grad():
        logits = model(torch.tensor([prompt + gold]), use_cache=False).logits[0].float()  # [L+G, V]
    logprobs = logits.log_softmax(-1)[len(prompt) - 1 : len(prompt) - 1 + len(gold)]  # [G, V]
    return logprobs.gather(-1, torch.tensor(gold)[:, None])[:, 0]


def _generate(model, prompt: list[int], eos: int | None) -> list[int]:
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long),
            do_sample=False, max_new_tokens=NEW_TOKENS, eos_token_id=eos, pad_token_id=0,
        )
    return out[0, len(prompt) :].tolist()


@pytest.mark.parametrize("gold_len", [1, 5])
def test_gold_logprob_matches_full_forward(loaded, gold_len: int) -> None:
    prompt, gold = _ids(PROMPT_TOKENS, seed=1), _ids(gold_len, seed=2)
    expected = _reference_logprobs(loaded.model, prompt, gold)
    out = run_prompt(loaded, prompt, gold, max_new_tokens=NEW_TOKENS, stop_token_ids=())
    assert out.gold_logprob_sum == pytest.approx(float(expected.sum()), abs=1e-4)
    assert out.gold_logprob_mean == pytest.approx(float(expected.mean()), abs=1e-4)
    assert out.gold_token_ids == tuple(gold)
    assert out.gold_first_token_is_argmax is False  # a random gold token is not the argmax


def test_first_token_argmax_flag(loaded) -> None:
    prompt = _ids(PROMPT_TOKENS, seed=1)
    greedy_first = _generate(loaded.model, prompt, eos=None)[0]
    gold = [greedy_first, *_ids(3, seed=3)]
    out = run_prompt(loaded, prompt, gold, max_new_tokens=2, stop_token_ids=())
    assert out.gold_first_token_is_argmax is True
    assert out.gold_logprob_sum == pytest.approx(float(_reference_logprobs(loaded.model, prompt, gold).sum()), abs=1e-4)


def test_generation_matches_generate_without_stop(loaded) -> None:
    prompt = _ids(PROMPT_TOKENS, seed=4)
    expected = _generate(loaded.model, prompt, eos=None)
    assert len(set(expected)) > 2, "degenerate tiny model: the comparison would prove little"
    out = run_prompt(loaded, prompt, _ids(4, seed=5), max_new_tokens=NEW_TOKENS, stop_token_ids=())
    assert list(out.generated_token_ids) == expected
    assert out.generated_text == loaded.tokenizer.decode(expected, skip_special_tokens=True)


def test_generation_matches_generate_with_early_stop(loaded) -> None:
    prompt = _ids(PROMPT_TOKENS, seed=4)
    free = _generate(loaded.model, prompt, eos=None)
    stop_at = next(i for i in range(2, NEW_TOKENS) if free[i] not in free[:i])
    expected = _generate(loaded.model, prompt, eos=free[stop_at])
    assert expected == free[: stop_at + 1]  # generate keeps the stop token; so does the backend
    out = run_prompt(loaded, prompt, _ids(4, seed=5), max_new_tokens=NEW_TOKENS, stop_token_ids=[free[stop_at]])
    assert list(out.generated_token_ids) == expected
    # default stop ids come from the generation config (a list, as for chat models with several eos)
    loaded.model.generation_config.eos_token_id = [VOCAB - 1, free[stop_at]]
    try:
        relisted = load_from_objects(loaded.model, loaded.tokenizer)
        assert run_prompt(relisted, prompt, [5], NEW_TOKENS).generated_token_ids == tuple(expected)
    finally:
        loaded.model.generation_config.eos_token_id = None


def test_same_prompt_twice_is_identical(loaded) -> None:
    prompt, gold = _ids(PROMPT_TOKENS, seed=6), _ids(3, seed=7)
    first = run_prompt(loaded, prompt, gold, max_new_tokens=NEW_TOKENS, stop_token_ids=())
    second = run_prompt(loaded, prompt, gold, max_new_tokens=NEW_TOKENS, stop_token_ids=())
    assert first.generated_token_ids == second.generated_token_ids
    assert first.gold_logprob_sum == second.gold_logprob_sum
    assert first.generated_text == second.generated_text


def _forward_lengths(loaded, call) -> tuple[list[int], object]:
    lengths: list[int] = []
    handle = loaded.model.register_forward_pre_hook(
        lambda _module, _args, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        return lengths, call()
    finally:
        handle.remove()


def test_prompt_is_prefilled_once(loaded) -> None:
    """A model's first trial: prompt once, gold[:-1] on the cache (prompt+gold[:-1] in the fallback), then 1s.
    Later trials: prompt + draft (gold, as the greedy answer is unknown) in one forward, then 1s."""
    prompt, gold = _ids(PROMPT_TOKENS, seed=8), _ids(4, seed=9)
    memory = AnswerMemory()  # nothing known about the model: its first trial takes the classic path
    first, out = _forward_lengths(loaded, lambda: run_prompt(loaded, prompt, gold, NEW_TOKENS, (), memory=memory))
    uses_fallback = loaded.name in SHORT_WINDOW
    # past a sliding window the cache is put back after the gold forward (forward.CacheRollback), not re-prefilled
    assert first == [PROMPT_TOKENS, len(gold) - 1] + [1] * (len(out.generated_token_ids) - 1)
    later, again = _forward_lengths(loaded, lambda: run_prompt(loaded, prompt, gold, NEW_TOKENS, (), memory=memory))
    assert again.generated_token_ids == out.generated_token_ids
    assert again.gold_logprob_sum == pytest.approx(out.gold_logprob_sum, abs=1e-5)
    assert out.generated_token_ids[0] != gold[0]  # the draft is refused at once: decoding from the prompt
    expected = first if uses_fallback else [PROMPT_TOKENS + len(gold)] + [1] * (len(out.generated_token_ids) - 1)
    assert later == expected


def test_a_right_draft_needs_no_decode_forward(loaded) -> None:
    """Gold = the greedy answer, tail = the rest of it: one forward gives answer and log-prob, as generate does."""
    prompt = _ids(PROMPT_TOKENS, seed=4)
    expected = _generate(loaded.model, prompt, eos=None)  # NEW_TOKENS tokens
    gold, tail = expected[:3], expected[3:]
    memory = AnswerMemory()  # nothing known about the model: its first trial takes the classic path
    run_prompt(loaded, prompt, gold, NEW_TOKENS, stop_token_ids=(), memory=memory)  # learns the model's cache type
    lengths, out = _forward_lengths(
        loaded, lambda: run_prompt(loaded, prompt, gold, NEW_TOKENS, stop_token_ids=(), answer_tail=tail, memory=memory)
    )
    assert list(out.generated_token_ids) == expected
    reference = float(_reference_logprobs(loaded.model, prompt, gold).sum())
    assert out.gold_logprob_sum == pytest.approx(reference, abs=1e-4) and out.gold_first_token_is_argmax
    if loaded.name in SHORT_WINDOW:  # window 16 < prompt: no draft, the classic path (gold forward rolled back)
        assert lengths == [PROMPT_TOKENS, len(gold) - 1] + [1] * (NEW_TOKENS - 1)
    else:
        assert lengths == [PROMPT_TOKENS + NEW_TOKENS - 1]  # the draft stops one short: max_new_tokens reached
        # without a tail the answer is learned: the next trial drafts the same tokens by itself
        run_prompt(loaded, prompt, gold, NEW_TOKENS, stop_token_ids=(), memory=memory)
        lengths, learned = _forward_lengths(
            loaded, lambda: run_prompt(loaded, prompt, gold, NEW_TOKENS, stop_token_ids=(), memory=memory)
        )
        assert learned.generated_token_ids == out.generated_token_ids and lengths == [PROMPT_TOKENS + NEW_TOKENS - 1]


@pytest.mark.parametrize("path", ["classic", "draft"])
def test_stop_on_tokenizer_eos_and_skip_special_tokens(loaded, path: str) -> None:
    """With default stop ids, <|im_end|> (the tokenizer's eos) ends decoding and is not in the text."""
    eos = loaded.tokenizer.eos_token_id
    prompt, gold = _ids(PROMPT_TOKENS, seed=10), _ids(3, seed=11)
    memory = AnswerMemory()  # nothing known about the model: its first trial takes the classic path
    if path == "draft":
        # learns the cache type: later trials draft
        run_prompt(loaded, prompt, gold, max_new_tokens=NEW_TOKENS, memory=memory)
    # classic: 1 prefill, 2 gold forward, 3 -> second token, 4 -> third token; draft: 1 prompt + gold, 2, 3
    third_token_call = 3 if path == "draft" and loaded.name not in SHORT_WINDOW else 4
    calls = {"n": 0}

    def force_eos_at_third_token(_module, _args, output):
        calls["n"] += 1
        if calls["n"] >= third_token_call:
            output = output.clone()
            output[..., eos] = 1e4
        return output

    handle = loaded.model.get_output_embeddings().register_forward_hook(force_eos_at_third_token)
    try:
        out = run_prompt(loaded, prompt, gold, max_new_tokens=NEW_TOKENS, memory=memory)
    finally:
        handle.remove()
    assert calls["n"] == third_token_call
    assert loaded.tokenizer.eos_token == "<|im_end|>" and eos in loaded.stop_token_ids
    assert len(out.generated_token_ids) == 3 and out.generated_token_ids[-1] == eos
    assert out.generated_text == loaded.tokenizer.decode(out.generated_token_ids[:2])
    assert "<|im_end|>" not in out.generated_text


@pytest.mark.parametrize("path", ["classic", "draft"])
def test_prefill_context_wraps_only_the_prompt_forward(loaded, path: str) -> None:
    """The slot for attention capture: entered once, around the one forward that sees the whole prompt
    (with the drafted answer after it on the draft path)."""
    prompt, gold = _ids(PROMPT_TOKENS, seed=13), _ids(3, seed=14)
    memory = AnswerMemory()  # nothing known about the model: its first trial takes the classic path
    if path == "draft":
        run_prompt(loaded, prompt, gold, NEW_TOKENS, (), memory=memory)
    inside: list[int] = []
    state = {"active": False}

    class Recording:
        def __enter__(self):
            state["active"] = True

        def __exit__(self, *_exc):
            state["active"] = False

    handle = loaded.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: inside.append(kwargs["input_ids"].shape[1]) if state["active"] else None,
        with_kwargs=True,
    )
    try:
        run_prompt(loaded, prompt, gold, NEW_TOKENS, (), prefill_context=Recording(), answer_tail=(), memory=memory)
    finally:
        handle.remove()
    drafted = path == "draft" and loaded.name not in SHORT_WINDOW
    assert inside == [PROMPT_TOKENS + len(gold) if drafted else PROMPT_TOKENS]


def test_cache_path_is_chosen_by_cache_type(loaded) -> None:
    with torch.inference_mode():
        state = classic.prefill(loaded, _ids(PROMPT_TOKENS, seed=12))
    assert can_crop(state.cache, PROMPT_TOKENS + 4) is (loaded.name not in SHORT_WINDOW)


def test_a_cache_past_its_window_can_be_rolled_back_but_not_cropped(loaded) -> None:
    with torch.inference_mode():
        state = classic.prefill(loaded, _ids(PROMPT_TOKENS, seed=12))
    assert can_roll_back(state.cache)  # every tiny family here: full and sliding layers only
    assert not can_roll_back(object()) and not can_roll_back(None)


@pytest.mark.parametrize("gold_len", [1, 5])
def test_without_a_rollback_the_gold_takes_a_forward_of_its_own(loaded, monkeypatch, gold_len: int) -> None:
    """Caches that can be neither cut back nor put back (linear attention, quantized): prompt + gold[:-1] without
    the cache, which stays untouched for decoding."""
    if loaded.name not in SHORT_WINDOW:
        pytest.skip("a cache within its window is cropped")
    monkeypatch.setattr(classic, "can_roll_back", lambda _cache: False)
    prompt, gold = _ids(PROMPT_TOKENS, seed=15), _ids(gold_len, seed=16)
    lengths, out = _forward_lengths(loaded, lambda: run_prompt(loaded, prompt, gold, NEW_TOKENS, (),
                                                               memory=AnswerMemory()))
    gold_forward = [PROMPT_TOKENS + gold_len - 1] if gold_len > 1 else []
    assert lengths == [PROMPT_TOKENS, *gold_forward] + [1] * (len(out.generated_token_ids) - 1)
    expected = _reference_logprobs(loaded.model, prompt, gold)
    assert out.gold_logprob_sum == pytest.approx(float(expected.sum()), abs=1e-4)
    assert list(out.generated_token_ids) == _generate(loaded.model, prompt, eos=None)


def test_empty_inputs_are_refused(loaded) -> None:
    with pytest.raises(ValueError, match="gold_ids is empty"):
        run_prompt(loaded, _ids(5, seed=1), [], max_new_tokens=1)
    with pytest.raises(ValueError, match="input_ids is empty"):
        run_prompt(loaded, [], [5], max_new_tokens=1)

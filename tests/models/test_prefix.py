"""Prefix reuse (evalkit/models/prefix.py): same answers and log-probs as one full prefill per trial.

Prompts are real passkey prompts built by the PromptBuilder (SmolLM2 tokenizer) over a depth grid of one
sample and length; models are tiny random-init float32 models of several families.
"""

from __future__ import annotations

import pytest
import torch

from evalkit.config.schema import ModelConfig
from evalkit.models import load_from_objects, run_prompt
from evalkit.attention.capture import AttentionCapture
from evalkit.models.draft import AnswerMemory, answer_draft
from evalkit.models.prefix import PrefixCache
from evalkit.prompt.builder import PromptBuilder
from evalkit.tasks import haystack_for_task, instantiate_needle, load_task, prompt_parts
from evalkit.types import REGION_CONTEXT_BEFORE, REGION_NAMES

DEPTHS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
LENGTH = 232  # the 7 depths take 7 distinct boundaries (asserted below); prompt + gold + answer stay under 256
NEW_TOKENS = 6
_DECODER = {"vocab_size": 49152, "max_position_embeddings": 512, "initializer_range": 0.2,
            "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}  # fmt: skip


def _config(family: str):
    from transformers import Gemma3TextConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    gqa = {"num_attention_heads": 4, "num_key_value_heads": 2}
    return {
        "llama": lambda: LlamaConfig(**_DECODER, **gqa),
        "qwen2": lambda: Qwen2Config(**_DECODER, **gqa),
        "gpt2": lambda: GPT2Config(vocab_size=49152, n_embd=64, n_layer=2, n_head=4, n_positions=512,
                                   initializer_range=0.2, bos_token_id=0, eos_token_id=0),  # fmt: skip
        # window longer than prompt + gold + answer: sliding layers never drop a state, reuse is exact
        "mistral-sw256": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=256),
        # window shorter than the prompt: the cache cannot be cut back, reuse must be refused
        "mistral-sw64": lambda: MistralConfig(**_DECODER, **gqa, sliding_window=64),
        # Gemma 3 (gemma3_text, as the built-in gemma3-270m): sliding and full layers mixed; a window longer
        # than the trial, and one shorter than the prompt (reuse refused, every trial on the classic path)
        "gemma3-sw256": lambda: _gemma3(Gemma3TextConfig, 256),
        "gemma3-sw16": lambda: _gemma3(Gemma3TextConfig, 16),
    }[family]()


def _gemma3(config_class, sliding_window: int):
    return config_class(
        **_DECODER, num_attention_heads=4, num_key_value_heads=2, head_dim=16, sliding_window=sliding_window,
        layer_types=["sliding_attention", "full_attention"], pad_token_id=0, bos_token_id=1, eos_token_id=2,
        tie_word_embeddings=False,  # tied, Gemma's scaled embeddings make a tiny random model repeat one token
    )


@pytest.fixture(scope="module")
def grid(smollm2_tokenizer):
    """The prompts and gold ids of one (task, sample, length) over DEPTHS."""
    task = load_task("passkey")
    needle = instantiate_needle(task, seed=13)
    parts = prompt_parts(task, needle, ModelConfig(name="x"))
    builder = PromptBuilder(smollm2_tokenizer)
    source = haystack_for_task(task)
    prompts = [builder.build_prompt(parts, source.sentences(13), LENGTH, depth) for depth in DEPTHS]
    return prompts, builder.gold_continuation_ids(parts, needle.answer)


def _loaded(family: str, tokenizer):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(_config(family), dtype=torch.float32)
    model.generation_config.eos_token_id = None
    return load_from_objects(model, tokenizer, name=f"tiny-{family}")


def _count_fed_tokens(model) -> tuple[list[int], object]:
    fed: list[int] = []
    handle = model.register_forward_pre_hook(
        lambda _m, _a, kwargs: fed.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    return fed, handle


def test_prompts_of_one_group_share_the_prefix_up_to_the_needle(grid) -> None:
    """What reuse relies on: preamble + haystack[:b_d] is a prefix of every deeper prompt of the group."""
    prompts, _ = grid
    starts = [p.regions[REGION_CONTEXT_BEFORE].token_end for p in prompts]
    # distinct insertion points (the depths nearest 0 and 1 may share a boundary with the ends)
    assert starts == sorted(starts) and len(set(starts)) >= len(starts) - 2
    longest = prompts[-1]
    for prompt, start in zip(prompts, starts):
        assert prompt.input_ids[:start] == longest.input_ids[:start]
        assert prompt.prompt_tokens == LENGTH


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2", "mistral-sw256", "mistral-sw64", "gemma3-sw256",
                                    "gemma3-sw16"])  # fmt: skip
def test_reuse_matches_one_prefill_per_trial(family, grid, smollm2_tokenizer) -> None:
    prompts, gold = grid
    loaded = _loaded(family, smollm2_tokenizer)
    plain = []
    for p in prompts:  # the reference: classic path (prompt forward, gold forward, one-token decoding) every time
        memory = AnswerMemory()
        plain.append(run_prompt(loaded, p.input_ids, gold, NEW_TOKENS, stop_token_ids=(), memory=memory))
    prefix = PrefixCache(loaded)
    fed, handle = _count_fed_tokens(loaded.model)
    try:
        reused = [
            run_prompt(loaded, p.input_ids, gold, NEW_TOKENS, (), prefix=prefix, memory=memory,
                       prefix_tokens=p.regions[REGION_CONTEXT_BEFORE].token_end, answer_tail=())  # fmt: skip
            for p in prompts
        ]
    finally:
        handle.remove()
    assert len({o.generated_token_ids for o in plain}) > 1, "degenerate model: every depth answers the same"
    for a, b in zip(plain, reused):
        assert b.generated_token_ids == a.generated_token_ids
        assert b.gold_logprob_sum == pytest.approx(a.gold_logprob_sum, abs=1e-4)
        assert b.gold_first_token_is_argmax == a.gold_first_token_is_argmax
    prompt_forwards = [t for t in fed if t > 1]  # one-token forwards are decode steps
    full = LENGTH * len(prompts)
    if family in ("mistral-sw64", "gemma3-sw16"):  # refused after the first trial: plain prefills, nothing more
        assert prefix.refused_from is not None and prefix.tokens == 0
        # each gold forward feeds gold[:-1] on the prompt's cache, then puts the cache back (forward.CacheRollback)
        assert sum(prompt_forwards) == full + len(prompts) * (len(gold) - 1)
    else:
        assert prefix.refused_from is None
        # one forward per trial: the prompt from where the previous trial's prefix ends, then the draft
        assert len(prompt_forwards) == len(prompts)
        draft = len(answer_draft(gold, (), NEW_TOKENS))
        expected = prompts[-1].regions[REGION_CONTEXT_BEFORE].token_end + sum(
            LENGTH - p.regions[REGION_CONTEXT_BEFORE].token_end for p in prompts
        )
        assert sum(prompt_forwards) - len(prompts) * draft == expected < 0.7 * full
        assert prefix.cache.get_seq_length() == prefix.tokens  # cropped back after the last trial


def test_long_extensions_fed_in_pieces_give_the_same_results(grid, smollm2_tokenizer, monkeypatch) -> None:
    """With pieces of 16+ tokens (512+ in use), every trial still answers and scores as the classic path."""
    import evalkit.models.draft as draft

    prompts, gold = grid
    loaded = _loaded("qwen2", smollm2_tokenizer)
    plain = []
    for p in prompts:
        memory = AnswerMemory()
        plain.append(run_prompt(loaded, p.input_ids, gold, NEW_TOKENS, stop_token_ids=(), memory=memory))
    monkeypatch.setattr(draft, "MIN_PIECE_TOKENS", 16)
    prefix = PrefixCache(loaded)
    fed, handle = _count_fed_tokens(loaded.model)
    try:
        reused = [run_prompt(loaded, p.input_ids, gold, NEW_TOKENS, (), prefix=prefix, answer_tail=(), memory=memory,
                             prefix_tokens=p.regions[REGION_CONTEXT_BEFORE].token_end) for p in prompts]  # fmt: skip
    finally:
        handle.remove()
    for a, b in zip(plain, reused):
        assert b.generated_token_ids == a.generated_token_ids
        assert b.gold_logprob_sum == pytest.approx(a.gold_logprob_sum, abs=1e-4)
    assert len([t for t in fed if t > 1]) > len(prompts)  # some extensions were split


def test_out_of_order_and_changed_prefixes_are_cut_back(grid, smollm2_tokenizer) -> None:
    """Descending depths or another haystack still give the plain results (the cache is cut to the common part)."""
    prompts, gold = grid
    loaded = _loaded("llama", smollm2_tokenizer)
    prefix, memory = PrefixCache(loaded), AnswerMemory()  # the first call learns the crop limit, the rest draft
    other = list(prompts[2].input_ids)
    other[40] = (other[40] + 1) % 49152  # a different haystack token inside the prefix
    for ids, start in [(p.input_ids, p.regions[REGION_CONTEXT_BEFORE].token_end) for p in reversed(prompts)] + [
        (tuple(other), prompts[2].regions[REGION_CONTEXT_BEFORE].token_end)
    ]:
        expected = run_prompt(loaded, ids, gold, NEW_TOKENS, (), memory=memory)
        got = run_prompt(loaded, ids, gold, NEW_TOKENS, (), prefix=prefix, prefix_tokens=start, memory=memory)
        assert got.generated_token_ids == expected.generated_token_ids
        assert got.gold_logprob_sum == pytest.approx(expected.gold_logprob_sum, abs=1e-4)
        assert prefix.held == list(ids[:start])


@pytest.mark.parametrize("piece_tokens", [512, 16])
def test_attention_capture_with_reuse_matches_capture_without(grid, smollm2_tokenizer, monkeypatch, piece_tokens) -> None:
    """Rows stay prompt positions; keys span the whole cache, so region masses equal the plain prefill's
    (also when long extensions are fed in pieces: the recorded forward holds every captured row)."""
    import evalkit.models.draft as draft

    monkeypatch.setattr(draft, "MIN_PIECE_TOKENS", piece_tokens)
    prompts, gold = grid
    loaded = _loaded("qwen2", smollm2_tokenizer)
    capture = AttentionCapture.attach(loaded.model)
    prefix, memory = PrefixCache(loaded), AnswerMemory()  # the first call learns the crop limit, the rest draft
    try:
        for prompt in prompts[1:]:
            spans = torch.tensor([[[prompt.regions[n].token_start, prompt.regions[n].token_end] for n in REGION_NAMES]])
            rows = torch.tensor([[LENGTH - 1, prompt.regions["needle"].token_start]])
            with_plain, with_reuse = capture.record(rows, spans), capture.record(rows, spans)
            run_prompt(loaded, prompt.input_ids, gold, 2, (), prefill_context=with_plain, memory=memory)
            start = prompt.regions[REGION_CONTEXT_BEFORE].token_end
            run_prompt(loaded, prompt.input_ids, gold, 2, (), prefill_context=with_reuse, prefix=prefix, prefix_tokens=start,
                       memory=memory)  # fmt: skip
            assert torch.allclose(with_reuse.mass, with_plain.mass, atol=1e-5)
            assert not torch.isnan(with_reuse.mass).any()
        early = capture.record(torch.tensor([[3]]), spans)  # a row inside the reused prefix
        with pytest.raises(Exception, match="reused prefix"):
            run_prompt(loaded, prompts[-1].input_ids, gold, 2, (), prefill_context=early, prefix=prefix, memory=memory,
                       prefix_tokens=prompts[-1].regions[REGION_CONTEXT_BEFORE].token_end)  # fmt: skip
    finally:
        capture.detach()


def _eager_region_mass(model, ids: tuple[int, ...], rows: list[int], spans: list[list[int]]) -> torch.Tensor:
    """Ground truth [layers, heads, rows, regions]: eager attention weights of one full forward, summed over spans."""
    model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            weights = torch.stack(model(torch.tensor([ids]), output_attentions=True).attentions, 1)[0]
    finally:
        model.set_attn_implementation("sdpa")
    # weights: [layers, heads, Lq, Lk]
    return torch.stack([weights[:, :, rows, s:e].sum(-1) for s, e in spans], -1)


@pytest.mark.parametrize("family", ["gemma3-sw256", "gemma3-sw16"])
def test_gemma3_capture_through_prefix_reuse_matches_eager(family, grid, smollm2_tokenizer) -> None:
    """Gemma 3's sliding layers under capture (sdpa kept as the inner kernel) on the prefix-reuse path: region
    masses of every depth equal eager ``output_attentions`` summed over the same spans (window 16: keys past
    the window carry no weight)."""
    prompts, gold = grid
    loaded = _loaded(family, smollm2_tokenizer)
    capture = AttentionCapture.attach(loaded.model, "sdpa")
    prefix, memory = PrefixCache(loaded), AnswerMemory()
    captured = []
    try:
        for prompt in prompts:
            spans = [[prompt.regions[n].token_start, prompt.regions[n].token_end] for n in REGION_NAMES]
            rows = [LENGTH - 1, prompt.regions["needle"].token_start + 1]
            record = capture.record(torch.tensor([rows]), torch.tensor([spans]))
            run_prompt(loaded, prompt.input_ids, gold, 2, (), prefill_context=record, prefix=prefix, memory=memory,
                       prefix_tokens=prompt.regions[REGION_CONTEXT_BEFORE].token_end)  # fmt: skip
            captured.append((prompt, rows, spans, record.mass[0]))
    finally:
        capture.detach()
    assert (prefix.refused_from is None) == (family == "gemma3-sw256")  # both paths are exercised
    for prompt, rows, spans, mass in captured:
        expected = _eager_region_mass(loaded.model, prompt.input_ids, rows, spans)
        torch.testing.assert_close(mass, expected, atol=1e-5, rtol=0)
    if family == "gemma3-sw16":  # the window matters: the last row puts no weight on the first tokens in layer 0
        assert float(captured[0][3][0, :, 0, 0].abs().max()) == 0.0

"""Attention rows at decode steps on the draft path: replayed from the drafted answer, equal to plain decoding.

A tiny random-init Llama (float32); the classic path (a model's first trial) is the reference.
"""

from __future__ import annotations

import pytest
import torch

from evalkit.models import load_from_objects, run_prompt
from evalkit.attention.capture import AttentionCapture
from evalkit.models.draft import AnswerMemory, answer_draft

PROMPT_TOKENS, NEW_TOKENS, ROWS = 40, 8, 3
SPANS = torch.tensor([[[0, 1], [1, 20], [20, PROMPT_TOKENS], [PROMPT_TOKENS, PROMPT_TOKENS + NEW_TOKENS]]])


@pytest.fixture(scope="module")
def setup(smollm2_tokenizer):
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)  # fmt: skip
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    loaded = load_from_objects(model, smollm2_tokenizer, name="tiny-llama")
    prompt = torch.randint(3, 49152, (PROMPT_TOKENS,), generator=torch.Generator().manual_seed(4)).tolist()
    with torch.no_grad():
        out = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, PROMPT_TOKENS, dtype=torch.long),
                             do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=0)  # fmt: skip
    capture = AttentionCapture.attach(model)
    yield loaded, capture, prompt, out[0, PROMPT_TOKENS:].tolist()
    capture.detach()


def _run(loaded, capture, prompt, gold, tail, memory):
    """run_prompt with the last prompt row and ROWS decode rows recorded; returns output, masses, forward lengths."""
    decodes = {}

    def decode_step(k: int):
        if k > ROWS:
            return None
        decodes[k] = capture.record(torch.zeros((1, 1), dtype=torch.long), SPANS)
        return decodes[k]

    first = capture.record(torch.tensor([[PROMPT_TOKENS - 1]]), SPANS)
    lengths: list[int] = []
    handle = loaded.model.register_forward_pre_hook(
        lambda _m, _a, kwargs: lengths.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    try:
        out = run_prompt(loaded, prompt, gold, NEW_TOKENS, (), prefill_context=first, decode_context=decode_step,
                         answer_tail=tail, memory=memory)  # fmt: skip
    finally:
        handle.remove()
    assert sorted(decodes) == list(range(1, ROWS + 1))
    return out, torch.stack([first.mass[0, ..., 0, :]] + [decodes[k].mass[0, ..., 0, :] for k in sorted(decodes)]), lengths


@pytest.mark.parametrize("wrong_from", [None, 4, 1])
def test_decode_rows_replayed_from_the_draft_equal_plain_decoding(setup, wrong_from) -> None:
    """Draft right throughout, wrong from answer token 4 (after the rows), or from token 1 (inside them)."""
    loaded, capture, prompt, answer = setup
    assert len(set(answer)) > 2, "degenerate tiny model"
    wrong = (answer[wrong_from or 0] + 1) % 49152
    gold, tail = {
        None: (answer[:3], answer[3:]),
        4: (answer[:3], [answer[3], wrong]),  # the draft agrees on tokens 0-3
        1: ([answer[0], wrong, answer[2]], []),  # the gold answer itself is wrong from token 1
    }[wrong_from]
    memory = AnswerMemory()  # nothing known yet: the first trial takes the classic path and learns the crop limit
    plain, plain_mass, plain_lengths = _run(loaded, capture, prompt, gold, tail, memory)  # first trial: classic path
    drafted, drafted_mass, lengths = _run(loaded, capture, prompt, gold, tail, memory)
    assert plain_lengths == [PROMPT_TOKENS, len(gold) - 1] + [1] * (NEW_TOKENS - 1)
    assert list(plain.generated_token_ids) == list(drafted.generated_token_ids) == answer
    assert drafted.gold_logprob_sum == pytest.approx(plain.gold_logprob_sum, abs=1e-4)
    torch.testing.assert_close(drafted_mass, plain_mass, atol=1e-5, rtol=0)
    assert not torch.isnan(drafted_mass).any()
    draft = len(answer_draft(gold, tail, NEW_TOKENS))
    if wrong_from is None:  # 7 drafted tokens give all 8: only the rows' forwards remain
        assert lengths == [PROMPT_TOKENS + draft] + [1] * ROWS
    elif wrong_from == 4:  # rows from the draft's agreed tokens, token 3 in one forward, then decoding
        assert lengths == [PROMPT_TOKENS + draft] + [1] * ROWS + [1] + [1] * (NEW_TOKENS - 1 - 4)
    else:  # the draft agrees on one token only: plain decoding after the first row
        assert lengths == [PROMPT_TOKENS + draft] + [1] * (NEW_TOKENS - 1)

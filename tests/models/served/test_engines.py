"""Engine routes on a llama-server look-alike: which gold log-probs the answer gives, which are forced."""

from __future__ import annotations

import pytest

from evalkit.models.served.client import HttpClient
from evalkit.models.served.engines import LlamaCppEngine, StepLogprobs, gold_prefix_logprobs
from served_fixtures import FakeServer, Script, forced_requests


def test_gold_prefix_reads_the_agreeing_steps_and_the_first_differing_one_where_listed():
    steps = [StepLogprobs(5, {5: -0.1}), StepLogprobs(6, {6: -0.2, 9: -3.0}), StepLogprobs(7, {7: -0.3})]
    assert gold_prefix_logprobs(steps, [5, 6, 7]) == [-0.1, -0.2, -0.3]  # greedy is the gold: all of it
    assert gold_prefix_logprobs(steps, [5, 6]) == [-0.1, -0.2]  # a shorter gold
    assert gold_prefix_logprobs(steps, [5, 6, 7, 8]) == [-0.1, -0.2, -0.3]  # longer than the answer
    # differs at step 1, where the gold 9 is listed: its log-prob counts, the steps after it are another context
    assert gold_prefix_logprobs(steps, [5, 9, 7]) == [-0.1, -3.0]
    assert gold_prefix_logprobs(steps, [5, 8, 7]) == [-0.1]  # differs at step 1 and the gold is not listed
    assert gold_prefix_logprobs(steps, [4, 6, 7]) == []
    assert gold_prefix_logprobs((), [5]) == []


@pytest.fixture
def fake(smollm2_tokenizer):
    server = FakeServer(Script(smollm2_tokenizer, answer=" 12345"))
    yield server
    server.close()


def test_an_answer_equal_to_the_gold_needs_no_forced_request(fake, smollm2_tokenizer):
    engine = LlamaCppEngine(HttpClient(fake.url))
    prompt = tuple(smollm2_tokenizer.encode("The pass key is", add_special_tokens=False))
    gold = smollm2_tokenizer.encode(" 12345", add_special_tokens=False)
    answer = engine.complete(prompt, 8)
    assert [s.token_id for s in answer.steps] == list(answer.token_ids) == gold
    assert engine.gold_logprobs(prompt, gold, answer) == [-0.125] * len(gold)
    assert forced_requests(fake.script.requests) == []
    assert engine.gold_logprobs(prompt, gold) == [-0.25] * len(gold)  # without the answer: all forced
    assert len(forced_requests(fake.script.requests)) == len(gold)


def test_forced_requests_start_where_the_answer_leaves_the_gold(fake, smollm2_tokenizer):
    engine = LlamaCppEngine(HttpClient(fake.url))
    prompt = tuple(smollm2_tokenizer.encode("The pass key is", add_special_tokens=False))
    gold = smollm2_tokenizer.encode(" 12399", add_special_tokens=False)
    answer_ids = smollm2_tokenizer.encode(" 12345", add_special_tokens=False)
    same = next(k for k in range(len(gold)) if gold[k] != answer_ids[k])
    assert 1 <= same < len(gold) - 1
    values = engine.gold_logprobs(prompt, gold, engine.complete(prompt, 8))
    assert values == [-0.125] * same + [-0.25] * (len(gold) - same)
    sent = forced_requests(fake.script.requests)
    assert [b["prompt"] for b in sent] == [[*prompt, *gold[:k]] for k in range(same, len(gold))]
    assert [b["logit_bias"][0][0] for b in sent] == gold[same:]
    # the gold token among the differing step's top log-probs: it is read off the answer, one request fewer
    fake.script.requests.clear()
    fake.script.answer_top = {gold[same]: -4.0}
    values = engine.gold_logprobs(prompt, gold, engine.complete(prompt, 8))
    assert values == [-0.125] * same + [-4.0] + [-0.25] * (len(gold) - same - 1)
    assert [b["logit_bias"][0][0] for b in forced_requests(fake.script.requests)] == gold[same + 1:]

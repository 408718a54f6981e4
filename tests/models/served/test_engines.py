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


class CannedClient:
    """A client whose every POST answers ``reply`` (the engines' reply checks, without a server)."""

    def __init__(self, reply):
        self.reply = reply

    def post(self, path, payload):
        return self.reply


OPENAI_OK = {"choices": [{"text": " 1", "finish_reason": "length"}], "usage": {"prompt_tokens": 3}}
SGLANG_OK = {"text": " 1", "output_ids": [9], "meta_info": {"prompt_tokens": 3, "finish_reason": {"type": "stop"}}}
# issue 19 R2: a bad value in an OpenAI or SGLang reply is a TrialFailed naming the engine, the field and the value
BAD_REPLIES = [
    ("openai", {**OPENAI_OK, "choices": []}, "openai /v1/completions: the reply's choices is [], not a non-empty list"),
    ("openai", {**OPENAI_OK, "choices": ["x"]}, "the reply's choices is ['x'], not a non-empty list of dicts"),
    ("openai", {**OPENAI_OK, "choices": [{"text": 5}]}, "the reply's choices[0].text is 5, not a string"),
    ("openai", {**OPENAI_OK, "usage": {"prompt_tokens": -3}}, "the reply's usage.prompt_tokens is -3, not a count"),
    ("openai", {**OPENAI_OK, "usage": {"prompt_tokens": 3.5}}, "usage.prompt_tokens is 3.5, not a count"),
    ("openai", {**OPENAI_OK, "usage": [1]}, "the reply's usage is [1], not an object"),
    ("sglang", {**SGLANG_OK, "output_ids": [-7, 10**9]}, "sglang /generate: the reply's output_ids[0] is -7, not a token id "
                                                         "of the tokenizer (0 to 99)"),
    ("sglang", {**SGLANG_OK, "output_ids": [100]}, "the reply's output_ids[0] is 100, not a token id of the tokenizer"),
    ("sglang", {**SGLANG_OK, "text": None}, "sglang /generate: the reply's text is None, not a string"),
    ("sglang", {**SGLANG_OK, "meta_info": {"prompt_tokens": False}}, "meta_info.prompt_tokens is False, not a count"),
    ("sglang", {**SGLANG_OK, "meta_info": "x"}, "the reply's meta_info is 'x', not an object"),
]


def _engine(kind, reply):
    from evalkit.models.served.engines import OpenAIEngine
    from evalkit.models.served.sglang import SGLangEngine

    return (OpenAIEngine if kind == "openai" else SGLangEngine)(CannedClient(reply), vocab_size=100)


@pytest.mark.parametrize("kind, reply, reason", BAD_REPLIES, ids=[f"{k}: {r[-40:]}" for k, _, r in BAD_REPLIES])
def test_a_bad_value_in_an_openai_or_sglang_reply_fails_the_trial_naming_it(kind, reply, reason):
    from evalkit.errors import TrialFailed

    ok = OPENAI_OK if kind == "openai" else SGLANG_OK
    assert _engine(kind, ok).complete((1, 2, 3), 8).prompt_tokens == 3  # the good reply reads
    with pytest.raises(TrialFailed) as err:
        _engine(kind, reply).complete((1, 2, 3), 8)
    assert reason in err.value.reason, err.value.reason


@pytest.mark.parametrize("kind, reply, reason", [
    ("openai", {"choices": [{"logprobs": {"token_logprobs": [None, -1.0, float("nan")]}}]},
     "openai /v1/completions: the reply's choices[0].logprobs.token_logprobs[2] is nan, not a log-probability"),
    ("openai", {"choices": [{"logprobs": {"token_logprobs": "x"}}]}, "token_logprobs is 'x', not a list"),
    ("sglang", {"meta_info": {"input_token_logprobs": [[float("inf"), 9, None]]}},
     "sglang /generate: the reply's meta_info.input_token_logprobs[0][0] is inf, not a log-probability"),
    ("sglang", {"meta_info": {"input_token_logprobs": 7}}, "meta_info.input_token_logprobs is 7, not a list"),
    ("tokenize", {"tokens": [1, -2]}, "llama_cpp /tokenize: the reply's tokens[1] is -2, not a token id"),
])
def test_a_bad_gold_logprob_or_token_list_fails_naming_it(kind, reply, reason):
    from evalkit.errors import TrialFailed

    with pytest.raises(TrialFailed) as err:
        if kind == "tokenize":
            LlamaCppEngine(CannedClient(reply), vocab_size=100).tokenize("x")
        else:
            _engine(kind, reply).gold_logprobs((1, 2), (9,))
    assert reason in err.value.reason, err.value.reason

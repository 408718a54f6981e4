"""Full control of the prompt text with the chat template off: framing fields, a fixed value, the classic prompt."""

from __future__ import annotations

import pytest
import yaml

from evalkit.config.schema import EvalConfig, ModelConfig, load_config
from evalkit.prompt.builder import PromptBuilder
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.tasks import haystack_for_task, instantiate_needle, load_task, prompt_parts
from evalkit.tasks.sources import NOISE_SENTENCES
from evalkit.tasks.spec import TaskSpec

CLASSIC_INSTRUCTIONS = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
                        "them. I will quiz you about the important information there.")
RAW = ModelConfig(name="m", chat_template=False)


def _hand_built(prefix_sentences: int, suffix_sentences: int, key: str) -> str:
    """The classic prompt as its authors write it: lines joined by newlines, sentences by single spaces."""
    noise = [NOISE_SENTENCES[i % 5] for i in range(prefix_sentences + suffix_sentences)]
    needle = f"The pass key is {key}. Remember it. {key} is the pass key."
    context = " ".join([*noise[:prefix_sentences], needle, *noise[prefix_sentences:]])
    return "\n".join([CLASSIC_INSTRUCTIONS, context, "What is the pass key? The pass key is"])


@pytest.mark.parametrize(("prefix_sentences", "suffix_sentences"), [(0, 40), (17, 23), (40, 0), (5, 1)])
def test_classic_passkey_prompt_is_token_for_token_the_hand_built_one(smollm2_tokenizer, prefix_sentences,
                                                                       suffix_sentences):
    task = load_task("passkey_classic")
    needle = instantiate_needle(task, seed=3)
    expected = smollm2_tokenizer.encode(_hand_built(prefix_sentences, suffix_sentences, needle.value))
    builder = PromptBuilder(smollm2_tokenizer)
    parts = prompt_parts(task, needle, RAW)
    # the depth of the hand-built needle, in haystack tokens
    head = smollm2_tokenizer.encode(_hand_built(prefix_sentences, suffix_sentences, needle.value).split(
        "The pass key is " + needle.value)[0])
    needle_tokens = len(builder.fragment_ids(needle.needle))
    haystack_tokens = len(expected) - builder.fixed_tokens(parts)
    depth = (len(head) - len(builder.fragment_ids(CLASSIC_INSTRUCTIONS)) - 1) / haystack_tokens
    prompt = builder.build_prompt(parts, haystack_for_task(task).sentences(3), len(expected), min(depth, 1.0))
    assert prompt.filler_tokens == 0 and needle_tokens == prompt.regions["needle"].length
    assert list(prompt.input_ids) == expected
    assert smollm2_tokenizer.decode(prompt.input_ids).startswith(CLASSIC_INSTRUCTIONS + "\nThe ")
    gold = builder.gold_continuation_ids(parts, needle.answer)
    assert list(prompt.input_ids) + gold == smollm2_tokenizer.encode(
        _hand_built(prefix_sentences, suffix_sentences, needle.value) + " " + needle.value)


def test_default_framing_is_unchanged(smollm2_tokenizer):
    task = load_task("passkey")
    needle = instantiate_needle(task, seed=1)
    prompt = PromptBuilder(smollm2_tokenizer).build_prompt(prompt_parts(task, needle, RAW), iter(["Calm day."] * 99),
                                                           200, 0.0)
    text = smollm2_tokenizer.decode(prompt.input_ids)
    assert f"there.\n\n {needle.needle} " in text  # blank line, then every context piece with its joining space
    assert text.endswith(f"\n\nQuestion: {task.question}\nAnswer: {task.answer_prefix}")


def test_fixed_value_is_one_line_and_the_same_in_every_trial():
    spec = dict(yaml.safe_load(open(load_task("passkey").source_path)))
    spec["value"] = yaml.safe_load('{kind: fixed, value: "71432"}')
    task = TaskSpec.model_validate(spec)
    assert {instantiate_needle(task, seed).value for seed in range(20)} == {"71432"}
    assert "71432 is the pass key" in instantiate_needle(task, 5).needle


def test_a_bad_question_format_is_refused():
    spec = dict(yaml.safe_load(open(load_task("passkey").source_path)))
    with pytest.raises(ValueError, match="must contain {question}"):
        TaskSpec.model_validate({**spec, "raw_prompt": {"question_format": "Q: {value}"}})


# trial ids of configs/quickstart.yaml (revision "REV") and task hashes, computed by evalkit at 1c48c99
OLD_QUICKSTART_IDS = ("7cef74d7bd34c44b", "0f938bd2b13f9b0d", "2b9b7ce5776a1e03")
OLD_LAST_ID, OLD_CONFIG_HASH = "77f13120fc132bce", "b0b8332f6d02b9e5"
OLD_TASK_HASHES = {"passkey": "257731412662dcfb", "kv_retrieval": "d0e1a48b3eabad1b", "doc_qa": "57426b95ab39cb69",
                   "fact": "6b10026466522553"}


def test_old_trial_ids_and_hashes_stay():
    from evalkit.config.schema import config_hash

    cfg = load_config("configs/quickstart.yaml")
    ids = [t.trial_id for t in expand(cfg, {"passkey": load_task("passkey")}, {"smollm2-135m-instruct": "REV"})]
    assert tuple(ids[:3]) == OLD_QUICKSTART_IDS and ids[-1] == OLD_LAST_ID and len(ids) == 40
    assert config_hash(cfg) == OLD_CONFIG_HASH
    assert {name: load_task(name).content_hash() for name in OLD_TASK_HASHES} == OLD_TASK_HASHES

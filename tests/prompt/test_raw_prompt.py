"""Full control of the prompt text with the chat template off: framing fields, a fixed value, the classic prompt."""

from __future__ import annotations

import re

import pytest
import yaml

from evalkit.config.schema import EvalConfig, ModelConfig, load_config
from evalkit.prompt.builder import PromptBuilder
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.tasks import haystack_for_task, instantiate_needle, load_task, prompt_parts
from evalkit.tasks.spec import TaskSpec

CLASSIC_INSTRUCTIONS = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize "
                        "them. I will quiz you about the important information there.")
RAW = ModelConfig(name="m", chat_template=False)
GARBAGE = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
GARBAGE_INF = " ".join([GARBAGE] * 5000)
SENTENCE_END_CHARS = [0, *(m.end() for m in re.finditer(r"\.", GARBAGE_INF[:3000]))]  # garbage lengths on a boundary


def _longlora_prompt(n_garbage_prefix: int, n_garbage_suffix: int, pass_key: str) -> str:
    """LongLoRA's passkey_retrivial.py ``generate_prompt_landmark``, transcribed, with the garbage lengths given."""
    task_description = CLASSIC_INSTRUCTIONS
    garbage_prefix = GARBAGE_INF[:n_garbage_prefix]
    garbage_suffix = GARBAGE_INF[:n_garbage_suffix]
    information_line = f"The pass key is {pass_key}. Remember it. {pass_key} is the pass key."
    final_question = "What is the pass key? The pass key is"
    lines = [task_description, garbage_prefix, information_line, garbage_suffix, final_question]
    return "\n".join(lines)


def _classic_prompt(tokenizer, expected_text: str):
    """evalkit's passkey_classic prompt of ``expected_text``'s length, the needle at the depth it has there."""
    task = load_task("passkey_classic")
    needle = instantiate_needle(task, seed=3)
    builder = PromptBuilder(tokenizer)
    parts = prompt_parts(task, needle, RAW)
    expected = tokenizer.encode(expected_text)
    before_tokens = (len(tokenizer.encode(expected_text.split("\nThe pass key is " + needle.value)[0]))
                     - len(tokenizer.encode(CLASSIC_INSTRUCTIONS + "\n")))  # the garbage prefix's tokens
    haystack_tokens = len(expected) - builder.fixed_tokens(parts)
    prompt = builder.build_prompt(parts, haystack_for_task(task).sentences(3), len(expected),
                                  before_tokens / haystack_tokens)
    return builder, parts, needle, prompt, before_tokens


@pytest.mark.parametrize(("prefix_sentences", "suffix_sentences"), [(0, 40), (20, 23), (40, 0), (5, 1), (15, 17)])
def test_classic_passkey_prompt_is_token_for_token_the_original(smollm2_tokenizer, prefix_sentences,
                                                                 suffix_sentences):
    key = instantiate_needle(load_task("passkey_classic"), seed=3).value
    text = _longlora_prompt(SENTENCE_END_CHARS[prefix_sentences], SENTENCE_END_CHARS[suffix_sentences], key)
    builder, parts, needle, prompt, before_tokens = _classic_prompt(smollm2_tokenizer, text)
    assert prompt.filler_tokens == 0
    assert smollm2_tokenizer.decode(prompt.input_ids) == smollm2_tokenizer.decode(smollm2_tokenizer.encode(text))
    assert list(prompt.input_ids) == smollm2_tokenizer.encode(text)
    # the needle's region is its line, both newlines included, right after the garbage prefix
    span = prompt.regions["needle"]
    assert prompt.regions["context_before"].length == before_tokens
    assert smollm2_tokenizer.decode(prompt.input_ids[span.token_start:span.token_end]) == f"\n{needle.needle}\n"
    gold = builder.gold_continuation_ids(parts, needle.answer)
    assert list(prompt.input_ids) + gold == smollm2_tokenizer.encode(text + " " + needle.value)


def test_classic_suffix_continues_the_noise_cycle(smollm2_tokenizer):
    """The one stated difference: after a prefix that is not whole 5-sentence cycles the suffix goes on with the
    cycle (the original restarts it at "The grass is green.")."""
    key = instantiate_needle(load_task("passkey_classic"), seed=3).value
    original = _longlora_prompt(SENTENCE_END_CHARS[17], SENTENCE_END_CHARS[23], key)
    suffix = GARBAGE_INF[SENTENCE_END_CHARS[17] + 1:SENTENCE_END_CHARS[17 + 23]]  # the 23 sentences after the 17th
    continued = original.replace(GARBAGE_INF[:SENTENCE_END_CHARS[23]] + "\nWhat", suffix + "\nWhat")
    *_, prompt, _ = _classic_prompt(smollm2_tokenizer, continued)
    assert list(prompt.input_ids) == smollm2_tokenizer.encode(continued) != smollm2_tokenizer.encode(original)


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

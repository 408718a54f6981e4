"""Trimming by whole units: the exact length never leaves a cut-off piece of a document or a key-value pair.

Regression tests for issue 17: the doc_qa haystack opened with the tail of another document (". It was founded
by Brisa Wesvale."), a competing answer right after the gold document at depth 0; the kv_retrieval haystack
opened with half a pair, so the object was not valid JSON.
"""

from __future__ import annotations

import json
import re

import pytest

from evalkit.config.schema import EvalConfig
from evalkit.errors import PlacementError
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.prompt.filler import filler_ids
from evalkit.prompt.haystack_check import CandidateFilter, check_haystack_clean
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.tasks import haystack_for_task, load_task
from evalkit.types import PromptParts

LENGTHS = [300, 347, 401, 512, 613, 777]
DEPTHS = [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]
DOCUMENT = (r"Document \(Title: (\w+)\) The \1 \w+ (?:stands in the town of \w+\. It was founded by \w+ \w+\."
            r"|in the town of \w+ is known for [^.]+\.)")
FILLER = r"(?:(?:And|and|so|on|forth|as|usual)[ .]*)+"


def _trials(name: str, samples: int = 2, **config):
    task = load_task(name)
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=[name], context_lengths=LENGTHS, depths=DEPTHS,
                                         samples=samples, output_dir="o", **config))
    return cfg, PreparedTask(task, haystack_for_task(task)), expand(cfg, {name: task})


def _text(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_doc_qa_haystack_is_whole_documents_and_filler_at_every_length_and_depth(smollm2_tokenizer):
    cfg, task, trials = _trials("doc_qa")
    builder = PromptBuilder(smollm2_tokenizer)
    for trial in trials:
        built = build_trial_prompt(builder, task, trial, cfg.models[0], cfg)
        prompt, needle = built.prompt, built.needle
        assert prompt.prompt_tokens == trial.context_length
        regions = prompt.regions
        before = _text(smollm2_tokenizer, prompt.input_ids[regions["context_before"].token_start:
                                                           regions["context_before"].token_end])
        after = _text(smollm2_tokenizer, prompt.input_ids[regions["context_after"].token_start:
                                                          regions["context_after"].token_end])
        for text in (before, after):
            rest = re.sub(DOCUMENT, "", text)  # everything that is not a whole document must be filler
            assert re.fullmatch(rf"\s*(?:{FILLER}\s*)*", rest), (trial, rest)
            assert needle.answer not in text and needle.facts["entity"] not in text
        # the only founder sentences are inside whole documents, one per title
        haystack = before + after
        assert haystack.count("It was founded by") == len(re.findall(r"stands in the town of \w+\. It was founded",
                                                                      haystack))
        assert built.documents_total == built.gold_document_index + 1 + after.count("(Title: ")  # typed fields
        assert built.extra.get("filler_tokens", 0) == prompt.filler_tokens


def test_kv_retrieval_context_is_valid_json_at_every_length_and_depth(smollm2_tokenizer):
    cfg, task, trials = _trials("kv_retrieval")
    builder = PromptBuilder(smollm2_tokenizer)
    for trial in trials:
        built = build_trial_prompt(builder, task, trial, cfg.models[0], cfg)
        prompt, needle = built.prompt, built.needle
        assert prompt.prompt_tokens == trial.context_length
        text = _text(smollm2_tokenizer, prompt.input_ids)
        body = text[text.index("{"): text.index("}", text.index(needle.needle)) + 1]
        members = json.loads(body, object_pairs_hook=lambda pairs: pairs)  # keeps repeated keys
        keys = [k for k, _ in members]
        assert len(keys) == len(set(keys)), trial  # no second value for any key
        assert dict(members)[needle.facts["key"]] == needle.answer and body.count(needle.answer) == 1


def test_filler_has_the_exact_length_or_none(smollm2_tokenizer):
    builder = PromptBuilder(smollm2_tokenizer)
    for tokens in range(1, 90):
        pieces = filler_ids(builder.fragment_ids, tokens, "words")
        assert sum(map(len, pieces)) == tokens
        text = _text(smollm2_tokenizer, [i for piece in pieces for i in piece])
        assert re.fullmatch(rf" (?:{FILLER}\s*)*", text), text  # content-free words only
        member = filler_ids(builder.fragment_ids, tokens, "json_member")
        if member is not None:
            assert len(member[0]) == tokens
            json.loads("{" + _text(smollm2_tokenizer, member[0]) + '"end": null}')
    assert filler_ids(builder.fragment_ids, 2, "json_member") is None  # no JSON member is that short


def test_units_naming_an_answer_candidate_are_dropped_and_a_leak_is_refused(smollm2_tokenizer):
    units = CandidateFilter(["The Corbrook library.", "Nothing here.", "Founded by cedric oststead.", "Content."],
                            ["Cedric Oststead", "Corbrook", "tent"])
    assert list(units) == ["Nothing here.", "Content."] and units.dropped == 2  # "tent" is not inside "Content"
    builder = PromptBuilder(smollm2_tokenizer)
    parts = PromptParts("Read.", "The code is 12345.", "What is the code?", "", None, False)
    leaky = builder.build_prompt(parts, iter(["It was 12345 once."] + ["Calm day."] * 40), 80, 1.0)
    with pytest.raises(PlacementError, match="contains '12345', an answer to the question"):
        check_haystack_clean(smollm2_tokenizer, leaky, ["12345"])
    check_haystack_clean(smollm2_tokenizer, builder.build_prompt(parts, iter(["Calm day."] * 40), 80, 1.0), ["12345"])


UUID_PAIR = r'"[0-9a-f-]{36}": "[0-9a-f-]{36}",'


@pytest.mark.parametrize("length", [384, 512])
def test_kv_depth_is_the_gold_pairs_position_among_the_real_pairs(smollm2_tokenizer, length):
    """Issue 24 V4: at 384 tokens the JSON filler member opened the object and counted toward depth, so depths 0.0
    and 0.3 both put the gold first among the real pairs. The filler is no unit: depth is position among the pairs
    (at 384 tokens two pairs fit beside the gold, three positions; at 512, four pairs, four distinct positions)."""
    task = load_task("kv_retrieval")
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=["kv_retrieval"], context_lengths=[length],
                                         depths=[0.0, 0.3, 0.5, 1.0], samples=3, output_dir="o"))
    prepared, builder = PreparedTask(task, haystack_for_task(task)), PromptBuilder(smollm2_tokenizer)
    by_sample: dict[int, list[tuple[float, int, list[str], float]]] = {}
    for trial in expand(cfg, {"kv_retrieval": task}):
        prompt = build_trial_prompt(builder, prepared, trial, cfg.models[0], cfg).prompt
        regions = prompt.regions
        before = _text(smollm2_tokenizer, prompt.input_ids[regions["context_before"].token_start:
                                                           regions["context_before"].token_end])
        after = _text(smollm2_tokenizer, prompt.input_ids[regions["context_after"].token_start:
                                                          regions["context_after"].token_end])
        assert prompt.filler_tokens > 0  # the case at issue: a filler member makes the exact length
        by_sample.setdefault(trial.sample, []).append(
            (trial.depth, len(re.findall(UUID_PAIR, before)), re.findall(UUID_PAIR, before + after),
             prompt.achieved_depth))
    for rows in by_sample.values():
        rows.sort(key=lambda row: row[0])
        pair_tokens = [len(builder.fragment_ids(pair)) for pair in rows[0][2]]
        offsets = [sum(pair_tokens[:k]) for k in range(len(pair_tokens) + 1)]
        for depth, index, _, achieved in rows:
            # the boundary between real pairs nearest depth * their tokens (ties: the earlier one)
            assert index == min(range(len(offsets)), key=lambda k: (abs(offsets[k] - depth * offsets[-1]), k))
            assert achieved == offsets[index] / offsets[-1]
        indices = [index for _, index, _, _ in rows]
        assert indices[0] == 0 < indices[1] and indices[-1] == len(pair_tokens)  # 0.0 and 0.3: two positions
        if len(pair_tokens) >= 4:  # room for four positions: four depths, four positions
            assert all(a < b for a, b in zip(indices, indices[1:])), rows

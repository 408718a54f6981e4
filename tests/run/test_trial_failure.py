"""The record's failure type and attention focus: from a built prompt and an output (hand-built), and in runs."""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from evalkit.attention.focus import attention_focus
from evalkit.config.schema import load_config
from evalkit.prompt.trial_prompt import TrialPrompt
from evalkit.run.runner import run_eval
from evalkit.run.trial_record import trial_record
from evalkit.store.format import attention_path, read_trial_attention
from evalkit.types import (
    FAILURE_TYPES,
    BuiltPrompt,
    NeedleInstance,
    PlacedDistractor,
    PromptParts,
    TokenSpan,
    Trial,
    TrialOutput,
)
from run_fixtures import records, tiny_config

TEXT = ("Some text. The special magic number for Alma is 73921. More text written in 2024. "
        "The special magic number for Boris is 48213. What is the special magic number for Alma?")
BUDGET = 4
EOS = 2


def built_prompt(tokenizer) -> TrialPrompt:
    """The text as one prompt (its regions are not what the failure type reads: it decodes the ids)."""
    ids = tuple(tokenizer(TEXT, add_special_tokens=False)["input_ids"])
    n = len(ids)
    regions = {"preamble": TokenSpan(0, 0), "context_before": TokenSpan(0, 5), "needle": TokenSpan(5, 10),
               "context_after": TokenSpan(10, n - 3), "question": TokenSpan(n - 3, n)}
    prompt = BuiltPrompt(ids, regions, "", n, 0, 0.5, 0.5, "")
    needle = NeedleInstance(needle="The special magic number for Alma is 73921.", question="", answer="73921",
                            value="73921", key="Alma")
    parts = PromptParts("", needle.needle, "", "", None, False)
    look_alike = PlacedDistractor("The special magic number for Boris is 48213.", "48213", "Boris", "other_key",
                                  20, 30, 0.6, 0.6)
    return TrialPrompt(parts, needle, prompt, {}, value_pattern=re.compile(r"\d"), distractors=(look_alike,))


def record_for(tokenizer, answer: str, token_ids: tuple[int, ...]):
    trial = Trial("t", "m", "task", 100, 0.5, 0, 1)
    output = TrialOutput(answer, token_ids, (), None, None, False, 0.0)
    return trial_record(trial, built_prompt(tokenizer), output, revision="", think_pattern=None,
                        max_new_tokens=BUDGET, stop_token_ids={EOS}, tokenizer=tokenizer)


def test_record_names_the_look_alike_answered(smollm2_tokenizer):
    record = record_for(smollm2_tokenizer, "48213", (5, EOS))
    assert (record.correct, record.failure, record.failure_distractor) == (False, "distractor", 0)
    assert record.attention_focus is None  # no attention captured


def test_record_failure_reads_the_decoded_prompt(smollm2_tokenizer):
    assert record_for(smollm2_tokenizer, "2024", (5, EOS)).failure == "other_in_prompt"  # in the prompt, not planted
    assert record_for(smollm2_tokenizer, "60606", (5, EOS)).failure == "absent"
    correct = record_for(smollm2_tokenizer, "73921", (5, EOS))
    assert (correct.failure, correct.failure_distractor) == ("correct", None)


def test_record_failure_is_truncated_only_when_the_budget_ran_out(smollm2_tokenizer):
    assert record_for(smollm2_tokenizer, "The special magic", (5, 6, 7, 8)).failure == "truncated"
    assert record_for(smollm2_tokenizer, "The special magic", (5, 6, EOS)).failure == "format"


def test_run_records_a_failure_type_and_focus_for_every_trial(tmp_path, tiny_model_dir, monkeypatch):
    """A captured run with a look-alike planted by hand at tokens [4, 9) of the haystack: its region is captured
    with the kernel's own masses (the per-token masses of those tokens add up to it) and the focus is recomputed
    from the stored arrays."""
    import evalkit.run.runner as runner

    build = runner.build_trial_prompt

    def with_look_alike(builder, task, trial, *args, **kwargs):
        built = build(builder, task, trial, *args, **kwargs)
        start = built.prompt.regions["context_before"].token_start + 4
        placed = PlacedDistractor("x", "48213", "k", "other_key", start, start + 5, 0.0, 0.0)
        return dataclasses.replace(built, distractors=(placed,))

    monkeypatch.setattr(runner, "build_trial_prompt", with_look_alike)
    attention = {"capture": True, "decode_steps": 1, "bins": 2, "sink_tokens": 1, "tokens": True}
    path = tiny_config(tmp_path, tiny_model_dir, attention=attention, context_lengths=[128], depths=[0.5, 1.0],
                       samples=1, controls=["closed_book"])
    rows = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    assert len(rows) == 3
    for row in rows:
        assert row["failure"] in FAILURE_TYPES and (row["failure"] == "correct") == row["correct"]
        att = read_trial_attention(attention_path(tmp_path / "run", row["trial_id"]))
        assert att.region_names[-1] == "distractor_00" and att.distractors == 1
        start, end = att.spans[-1]
        assert start == row["regions"]["context_before"][0] + 4 and end == start + 5
        # the region's mass (mean over heads) is the per-token masses of its tokens added up
        by_tokens = att.token_mass[:, 0, start:end].astype(np.float64).sum(-1)  # [layers]
        np.testing.assert_allclose(att.mass[:, :, 0, -1].mean(1), by_tokens, atol=2e-3)
        if row["control"]:
            assert row["attention_focus"] is None  # a closed-book prompt has no fact to look at
        else:
            assert row["attention_focus"] == attention_focus(att) is not None


DOCUMENTS = ("Document [1](Title: Tower) The Eiffel Tower was finished in 1889 in Paris.\n",
             "Document [2](Title: Bridge) The Tower Bridge in London opened in 1894.\n",
             "Document [3](Title: Statue) The Statue of Liberty was dedicated in 1886.\n")


def documents_prompt(tokenizer, gold_index: int) -> TrialPrompt:
    """Three documents encoded apart and joined as ids (their spans exact), then the question."""
    pieces = [tokenizer(text, add_special_tokens=False)["input_ids"] for text in DOCUMENTS]
    question = tokenizer("Question: when was the Eiffel Tower finished?", add_special_tokens=False)["input_ids"]
    ids, spans = [], []
    for piece in pieces:
        spans.append(TokenSpan(len(ids), len(ids) + len(piece)))
        ids += piece
    regions = {"preamble": TokenSpan(0, 0), "context_before": TokenSpan(0, spans[gold_index].token_start),
               "needle": spans[gold_index], "context_after": TokenSpan(spans[gold_index].token_end, len(ids)),
               "question": TokenSpan(len(ids), len(ids) + len(question))}
    prompt = BuiltPrompt(tuple(ids + question), regions, DOCUMENTS[gold_index], len(ids) + len(question), 0, 0.0,
                         0.0, "", document_spans=tuple(spans))
    needle = NeedleInstance(DOCUMENTS[gold_index], "when was the Eiffel Tower finished?", "1889", "1889",
                            answer_aliases=("1889",))
    return TrialPrompt(PromptParts("", needle.needle, "", "", None, False), needle, prompt, {}, gold_index, 3)


def test_documents_record_names_the_distractor_document_answered(smollm2_tokenizer):
    trial = Trial("t", "m", "docs", 100, 0.0, 0, 1)
    for answer, failure, position in (("It opened in 1894.", "distractor", 1), ("1886", "distractor", 2),
                                      ("Paris", "other_in_prompt", None), ("1901", "absent", None)):
        output = TrialOutput(answer, (5, EOS), (), None, None, False, 0.0)
        record = trial_record(trial, documents_prompt(smollm2_tokenizer, 0), output, revision="", think_pattern=None,
                              max_new_tokens=BUDGET, stop_token_ids={EOS}, tokenizer=smollm2_tokenizer)
        assert (record.failure, record.failure_distractor) == (failure, position), answer
    # the document at the gold position is no distractor: with the gold at position 1, its text is other_in_prompt
    output = TrialOutput("It opened in 1894.", (5, EOS), (), None, None, False, 0.0)
    moved = trial_record(trial, documents_prompt(smollm2_tokenizer, 1), output, revision="", think_pattern=None,
                         max_new_tokens=BUDGET, stop_token_ids={EOS}, tokenizer=smollm2_tokenizer)
    assert (moved.failure, moved.failure_distractor) == ("other_in_prompt", None)


def test_documents_run_records_failure_and_focus_from_the_document_regions(tmp_path, tiny_model_dir):
    from pathlib import Path

    data = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "docs.yaml").write_text("name: docs\ndocuments:\n  source: {format: liu_qa, path: "
                                                  "nq-open-oracle-40.jsonl}\n  total: 4\nmetric: subspan_em\n")
    path = tiny_config(tmp_path, tiny_model_dir, tasks=["docs"], task_dirs=["tasks"], data_dir=str(data),
                       context_lengths=[1024], depths=[0.0, 1.0], samples=1, controls=["oracle"],
                       attention={"capture": True, "bins": 2, "sink_tokens": 1, "decode_steps": 0})
    rows = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    assert len(rows) == 3
    for row in rows:
        assert row["failure"] in FAILURE_TYPES and (row["failure"] == "correct") == row["correct"]
        if row["failure"] == "distractor":
            assert row["failure_distractor"] != row["gold_document_index"]
        att = read_trial_attention(attention_path(tmp_path / "run", row["trial_id"]))
        if row["control"]:
            assert row["attention_focus"] is None
        else:  # the gold document against the three others
            assert att.documents == 4 and row["attention_focus"] == attention_focus(att) is not None

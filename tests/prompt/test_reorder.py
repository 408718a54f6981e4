"""The ``reorder_by_relevance`` arm (evalkit/prompt/reorder.py): BM25 order, the same documents, the gold's
new index in the record, and the requested depth kept as the pairing key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.prompt.documents import format_documents
from evalkit.prompt.reorder import relevance_scores, reorder_by_relevance
from evalkit.run.preflight import PreparedTask
from evalkit.tasks.documents import Document, DocumentCorpus
from evalkit.tasks.spec import TaskSpec
from evalkit.types import Trial

DATA = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
CONFIG = EvalConfig.model_validate({"models": ["m"], "tasks": ["docs"], "context_lengths": [8192],
                                    "depths": [0.0, 0.5, 1.0], "samples": 3, "output_dir": "o",
                                    "mitigations": ["none", "reorder_by_relevance"]})


def _task() -> PreparedTask:
    spec = TaskSpec.model_validate({"name": "docs", "metric": "best_subspan_em", "documents": {
        "source": {"format": "liu_qa", "path": "nq-open-oracle-40.jsonl"}, "total": 6}})
    return PreparedTask(spec, DocumentCorpus(spec.documents, DATA))


def _build(tokenizer, task, depth: float, arm: str, sample: int = 0):
    trial = Trial("t", "m", "docs", 8192, depth, sample, 0, "", (), arm)
    return build_trial_prompt(PromptBuilder(tokenizer), task, trial, ModelConfig(name="m", chat_template=False), CONFIG)


def test_most_similar_document_goes_last_and_ties_keep_their_order() -> None:
    docs = [Document("Cats", "cats purr and cats sleep"), Document("Rain", "it rained all day"),
            Document("Weather", "the weather was grey"), Document("Dogs", "dogs bark at cats")]
    ordered = reorder_by_relevance("why do cats purr", docs)
    scores = relevance_scores("why do cats purr", docs)
    assert ordered[-1] == docs[0] and ordered[-2] == docs[3]  # the two cat documents, most similar last
    assert ordered[:2] == [docs[1], docs[2]]  # both score 0: they keep the order they had
    assert sorted(scores) == [relevance_scores("why do cats purr", ordered)[i] for i in range(4)]


def test_reordering_keeps_the_gold_and_the_same_documents_and_records_where_the_gold_went(smollm2_tokenizer):
    task = _task()
    for sample in range(3):
        base = [_build(smollm2_tokenizer, task, depth, "none", sample) for depth in CONFIG.depths]
        moved = [_build(smollm2_tokenizer, task, depth, "reorder_by_relevance", sample) for depth in CONFIG.depths]
        example = task.haystack.example(task.haystack.example_index(sample, 0))
        for plain, arm, depth in zip(base, moved, CONFIG.depths):
            texts = lambda built: [smollm2_tokenizer.decode(built.prompt.input_ids[s.token_start:s.token_end])
                                   for s in built.prompt.document_spans]
            # the same set of documents (their numbers follow the position, so compare title and text)
            strip = lambda text: text.split("(Title: ", 1)[1].strip()
            assert sorted(map(strip, texts(plain))) == sorted(map(strip, texts(arm)))
            assert arm.documents_total == plain.documents_total == 6
            gold_text = format_documents(task.spec.documents, [example.gold])[0].split("(Title: ", 1)[1]
            assert strip(texts(arm)[arm.gold_document_index]) == gold_text.strip()
            assert arm.prompt.regions["needle"] == arm.prompt.document_spans[arm.gold_document_index]
            assert arm.prompt.requested_depth == depth  # the pairing key stays the requested position
            assert arm.extra["requested_gold_document_index"] == plain.gold_document_index
        # one order whatever the requested position: the order is the retriever's, not the depth's
        assert len({arm.prompt.prompt_sha256 for arm in moved}) == 1
        scores = relevance_scores(example.question, [example.gold, *example.distractors])  # depth 0's order
        assert moved[0].gold_document_index == sum(s < scores[0] for s in scores[1:])  # stable: ties stay after it


def test_a_needle_tasks_haystack_sentences_and_needle_are_reordered_by_relevance_at_the_same_length(
        smollm2_tokenizer):
    from collections import Counter

    from evalkit.prompt.reorder import text_scores
    from evalkit.run.preflight import prepare_tasks

    config = EvalConfig.model_validate({"models": ["m"], "tasks": ["fact"], "context_lengths": [512],
                                        "depths": [0.0, 0.5], "samples": 1, "output_dir": "o",
                                        "mitigations": ["none", "reorder_by_relevance"]})
    task = prepare_tasks(config, Path("configs/x.yaml"))["fact"]
    builder, entry = PromptBuilder(smollm2_tokenizer), ModelConfig(name="m", chat_template=False)
    for depth in config.depths:
        trial = Trial("t", "m", "fact", 512, depth, 0, 0, "", ())
        plain = build_trial_prompt(builder, task, trial, entry, config)
        moved = build_trial_prompt(builder, task, dataclasses.replace(trial, mitigation="reorder_by_relevance"),
                                   entry, config)
        ids, new = plain.prompt.input_ids, moved.prompt.input_ids
        assert len(new) == len(ids) == 512 and Counter(new) == Counter(ids)  # the same tokens, rearranged
        needle = moved.prompt.regions["needle"]
        assert smollm2_tokenizer.decode(new[needle.token_start:needle.token_end]).strip() == plain.parts.needle.strip()
        assert moved.prompt.requested_depth == depth and moved.prompt.achieved_depth != plain.prompt.achieved_depth
        # the needle sits after every unit BM25 scores below it: its score is at least theirs
        before = smollm2_tokenizer.decode(new[moved.prompt.regions["context_before"].token_start:needle.token_start])
        units = [u for u in before.split(". ") if u.strip()]
        needle_score, *scores = text_scores(plain.parts.question, [plain.parts.needle, *units])
        assert all(score <= needle_score for score in scores)


def test_bm25_scoring_does_not_log_every_index_build(caplog):
    # bm25s logs each index build at DEBUG: one line per trial on `evalkit validate` (the CLI logs at INFO, and a
    # user's DEBUG logging would get them all)
    import logging

    from evalkit.prompt.reorder import text_scores

    caplog.set_level(logging.DEBUG)
    text_scores("what is the code", ["the code is here", "nothing else"])
    assert not [r for r in caplog.records if r.name.startswith("bm25s")]

"""A documents task's trial: which example, which documents in which order, and what its record adds.

Sample ``s`` of a run asks the ``s``-th question of a seeded shuffle of the source's rows (so samples are
distinct questions); its distractors are ranked once per question and keep their order at every gold
position, so the trials of one question differ only in where the gold document sits (paired by design).
Controls: ``closed_book`` is the task's closed-book prompt with no documents; ``oracle`` shows the gold
document alone (Liu et al.'s two baselines); ``dummy_needle`` is not defined for documents.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from evalkit.errors import PlacementError
from evalkit.prompt.documents import (
    DocumentFrame,
    build_closed_book_prompt,
    build_document_prompt,
    content_free_documents,
    format_documents,
    gold_ids_after,
    gold_position,
)
from evalkit.prompt.layouts import Layout, apply_layout
from evalkit.prompt.reorder import REORDER_ARM, arm_kind, reorder_by_relevance
from evalkit.prompt.similarity import NeedleSimilarity, needle_similarity
from evalkit.prompt.trial_prompt import TrialPrompt
from evalkit.tasks.documents import DocumentExample
from evalkit.types import NeedleInstance, PromptParts, Trial


def build_document_trial(tokenizer: Any, task: Any, trial: Trial, model_cfg: Any, config: Any,
                         order: Sequence[int] | None = None, content_free: str | None = None) -> TrialPrompt:
    """The prompt of ``trial`` for a documents task (``task``: a PreparedTask whose haystack is a DocumentCorpus);
    ``order`` (a placement trial): its documents rearranged, ``documents[order[0]]`` first (attention_sort);
    ``content_free``: each document replaced by that text at about its length (calibrate_attention's probe)."""
    spec, corpus = task.spec, task.haystack
    documents_spec = spec.documents
    example = corpus.example(corpus.example_index(trial.sample, config.seed))
    gold_text = format_documents(documents_spec, [example.gold])[0]
    needle = NeedleInstance(needle=gold_text, question=example.question, answer=example.answers[0],
                            value=example.answers[0], answer_aliases=example.answers)
    parts = PromptParts(
        instructions="", needle=gold_text, question=example.question, answer_prefix=spec.answer_prefix,
        system_prompt=model_cfg.system_prompt, use_chat_template=model_cfg.chat_template,
        chat_template_kwargs=tuple(sorted(model_cfg.chat_template_kwargs.items())),
    )
    parts = apply_layout(parts, Layout.from_pairs(trial.layout), model_cfg.system_prompt)
    frame = DocumentFrame(parts.use_chat_template, parts.system_prompt, parts.answer_prefix, parts.chat_template_kwargs)
    extra: dict[str, Any] = {"example_id": example.example_id, "distractors": corpus.policy}
    if len(example.answers) > 1:
        extra["answers"] = list(example.answers)
    if corpus.self_answering_left_out:  # questions that contain their own answer, left out of the sample pool
        extra["self_answering_left_out"] = corpus.self_answering_left_out
    if example.self_answering:  # kept (documents.keep_self_answering): an echo of the question scores right
        extra["self_answering"] = True
    gold_index: int | None
    if trial.control == "closed_book":
        prompt = build_closed_book_prompt(tokenizer, documents_spec, frame, example.question, trial.context_length)
        gold_index, total = None, 0
    elif trial.control == "oracle":
        prompt = build_document_prompt(tokenizer, documents_spec, frame, example.question, [example.gold], 0,
                                       trial.context_length or max(config.context_lengths), 0.0)
        gold_index, total = 0, 1
    elif trial.control:
        raise PlacementError(f"control {trial.control!r} is not defined for documents tasks; "
                             "use closed_book and oracle")
    else:
        total = documents_spec.total
        gold_index = gold_position(trial.depth, total)
        documents = list(example.distractors)
        documents.insert(gold_index, example.gold)
        if arm_kind(config, trial) == REORDER_ARM:  # the depth stays the pairing key; the gold moves with its score
            documents = reorder_by_relevance(example.question, documents)
            gold_index = documents.index(example.gold)
            extra["requested_gold_document_index"] = gold_position(trial.depth, total)
        if order is not None:
            documents = [documents[i] for i in order]
            gold_index = documents.index(example.gold)
        if content_free is not None:
            documents = content_free_documents(documents, content_free, lambda text: _token_count(tokenizer, text))
        prompt = build_document_prompt(tokenizer, documents_spec, frame, example.question, documents, gold_index,
                                       trial.context_length, trial.depth)
    gold_ids = gold_ids_after(tokenizer, prompt, needle.answer)
    if prompt.needle_text:  # the gold document as placed (its number is its position)
        needle = dataclasses.replace(needle, needle=prompt.needle_text)
        parts = dataclasses.replace(parts, needle=prompt.needle_text)
    similarity = None if trial.control == "closed_book" else gold_similarity(example, alone=trial.control == "oracle")
    return TrialPrompt(parts, needle, prompt, extra, gold_index, total, gold_ids, spec.metric, spec.keyword_threshold,
                       similarity)


def gold_similarity(example: DocumentExample, alone: bool = False) -> NeedleSimilarity:
    """The gold document's measured similarity to the question (``similarity.py``): the BM25 corpus is the
    trial's documents, title and text as the reorder_by_relevance arm scores them (the gold ``alone`` in an
    oracle trial); their order does not matter, so every gold position of a question scores the same."""
    others = () if alone else example.distractors
    return needle_similarity(example.question, f"{example.gold.title} {example.gold.text}",
                             [f"{doc.title} {doc.text}" for doc in others])


def _token_count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])

"""How similar a trial's needle is to its question, measured on the prompt as built (record fields
``question_overlap`` and ``question_bm25``).

- ``question_overlap``: the share of the question's content words that occur in the needle
  (``tasks/entities.lexical_overlap``, the measure of the low-overlap kind; 1.0 = every content word shared).
- ``question_bm25``: the needle's BM25 score against the question (``prompt/reorder.text_scores``, the scorer of
  the reorder_by_relevance arm: ``bm25s`` defaults k1 = 1.5, b = 0.75, Lucene IDF, English stop words), with the
  trial's own context as the corpus: the needle and every sentence of the haystack around it. IDF thus says how
  rare the question's words are in this prompt, so a needle that shares only words the haystack is full of scores
  low. The corpus is an unordered set of sentences: a shuffled trial scores as its coherent pair.

Both are measured, never read from a task file, so a needle variant's similarity is what the model was given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.prompt.reorder import text_scores
from evalkit.prompt.tokenization import decode_exact
from evalkit.tasks.entities import lexical_overlap
from evalkit.tasks.haystacks import split_sentences
from evalkit.types import REGION_CONTEXT_AFTER, REGION_CONTEXT_BEFORE, BuiltPrompt


@dataclass(frozen=True)
class NeedleSimilarity:
    """A needle's measured similarity to its question (the record's ``question_overlap``, ``question_bm25``)."""

    overlap: float  # share of the question's content words found in the needle, 0..1
    bm25: float  # the needle's BM25 score against the question, in the corpus of the trial's context


def needle_similarity(question: str, needle: str, context_units: Sequence[str]) -> NeedleSimilarity:
    """``needle``'s similarity to ``question``; ``context_units`` (the haystack's sentences) complete the BM25
    corpus, the needle being its first document."""
    bm25 = text_scores(question, [needle, *context_units])[0]
    return NeedleSimilarity(overlap=round(lexical_overlap(question, needle), 6), bm25=round(bm25, 6))


def prompt_similarity(tokenizer: Any, prompt: BuiltPrompt, question: str) -> NeedleSimilarity:
    """The placed needle's similarity to ``question``, the corpus being the sentences of the prompt's context
    regions as the model reads them (decoded; the filler and further needles are sentences there too)."""
    units = [unit for region in (REGION_CONTEXT_BEFORE, REGION_CONTEXT_AFTER)
             for unit in split_sentences(_decode_region(tokenizer, prompt, region))]
    return needle_similarity(question, prompt.needle_text, units)


def _decode_region(tokenizer: Any, prompt: BuiltPrompt, region: str) -> str:
    span = prompt.regions[region]
    return decode_exact(tokenizer, prompt.input_ids[span.token_start : span.token_end])

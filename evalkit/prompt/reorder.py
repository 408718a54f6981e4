"""The ``reorder_by_relevance`` arm: a trial's documents (or a needle task's haystack sentences, the needle among
them) reordered so the most question-similar sit last.

Liu et al. (2023) find models use the end of the context (nearest the question) best; a retriever's ranking
can put the likely-gold documents there. Similarity is BM25 (the ``bm25s`` library, tokenised as the
distractor retriever in ``evalkit/tasks/documents.py`` tokenises), scored over the trial's own documents.
The order is ascending score, so the most similar document is the last one; equal scores keep the order
they had, so the order is deterministic. Nothing is added or dropped: the same documents, gold included.
On a needle task the units are the haystack's token pieces (whole sentences, the filler) and the needle; each
piece keeps its token ids, so the prompt keeps its exact length.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from evalkit.tasks.documents import Document

REORDER_ARM = "reorder_by_relevance"


def arm_kind(config: Any, trial: Any) -> str:
    """The kind of the trial's mitigation arm ("none" for the baseline, or a config from before arms existed)."""
    if trial.mitigation == "none" or not hasattr(config, "arm"):
        return "none"
    return config.arm(trial.mitigation).arm


def relevance_scores(question: str, documents: Sequence[Document]) -> list[float]:
    """BM25 score of each document (title and text) against ``question``, in the documents' order."""
    return text_scores(question, [f"{doc.title} {doc.text}" for doc in documents])


def text_scores(question: str, texts: Sequence[str]) -> list[float]:
    """BM25 score of each text against ``question``, in the texts' order."""
    import bm25s  # imported here so evalkit's CLI starts fast (as the distractor retriever does)

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG (one per trial)
    if not texts:
        return []
    corpus = bm25s.tokenize(list(texts), stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    query = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
    if not query:  # a question of stop words only: every document scores alike
        return [0.0] * len(texts)
    return [float(s) for s in retriever.get_scores(query)]


def reorder_by_relevance(question: str, documents: Sequence[Document]) -> list[Document]:
    """``documents`` in ascending BM25 similarity to ``question`` (most similar last; ties keep their order)."""
    scores = relevance_scores(question, documents)
    order = sorted(range(len(documents)), key=lambda i: scores[i])  # sorted() is stable: ties keep their order
    return [documents[i] for i in order]


def reorder_pieces(tokenizer: Any, question: str, pieces: list[tuple[int, ...]], needle_index: int,
                   needle_ids: tuple[int, ...]) -> tuple[list[tuple[int, ...]], int]:
    """A needle task's haystack ``pieces`` with the needle (before ``pieces[needle_index]``) reordered by BM25
    against ``question``, most similar last: ``(pieces without the needle, the needle's new index)``."""
    units = [*pieces[:needle_index], needle_ids, *pieces[needle_index:]]
    scores = text_scores(question, [tokenizer.decode(list(unit)) for unit in units])
    order = sorted(range(len(units)), key=lambda i: scores[i])
    new_index = order.index(needle_index)
    return [units[i] for i in order if i != needle_index], new_index

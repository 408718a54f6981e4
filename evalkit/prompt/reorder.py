"""The ``reorder_by_relevance`` arm: a trial's documents reordered so the most question-similar sit last.

Liu et al. (2023) find models use the end of the context (nearest the question) best; a retriever's ranking
can put the likely-gold documents there. Similarity is BM25 (the ``bm25s`` library, tokenised as the
distractor retriever in ``evalkit/tasks/documents.py`` tokenises), scored over the trial's own documents.
The order is ascending score, so the most similar document is the last one; equal scores keep the order
they had, so the order is deterministic. Nothing is added or dropped: the same documents, gold included.
"""

from __future__ import annotations

from collections.abc import Sequence

from evalkit.tasks.documents import Document

REORDER_ARM = "reorder_by_relevance"


def relevance_scores(question: str, documents: Sequence[Document]) -> list[float]:
    """BM25 score of each document (title and text) against ``question``, in the documents' order."""
    import bm25s  # imported here so evalkit's CLI starts fast (as the distractor retriever does)

    if not documents:
        return []
    corpus = bm25s.tokenize([f"{doc.title} {doc.text}" for doc in documents], stopwords="en", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    query = bm25s.tokenize([question], stopwords="en", return_ids=False, show_progress=False)[0]
    if not query:  # a question of stop words only: every document scores alike
        return [0.0] * len(documents)
    return [float(s) for s in retriever.get_scores(query)]


def reorder_by_relevance(question: str, documents: Sequence[Document]) -> list[Document]:
    """``documents`` in ascending BM25 similarity to ``question`` (most similar last; ties keep their order)."""
    scores = relevance_scores(question, documents)
    order = sorted(range(len(documents)), key=lambda i: scores[i])  # sorted() is stable: ties keep their order
    return [documents[i] for i in order]

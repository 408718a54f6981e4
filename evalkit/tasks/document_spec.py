"""The ``documents:`` block of a task file: real documents, one of them gold, at a controlled position.

A documents task shows the model ``total`` documents (the gold one and ``total - 1`` distractors) inside a
prompt ``template``; the trial's depth picks the gold document's position (``round(depth * (total - 1))``,
so depths ``[0, 0.5, 1]`` put it first, in the middle and last). The defaults reproduce Liu et al. 2023
("Lost in the Middle"): their ``qa.prompt``, documents written ``Document [i](Title: t) text`` and joined
by a line break, and their closed-book prompt for the ``closed_book`` control.

Sources (``source.format``), paths relative to the task file:

- ``liu_qa``: Liu et al.'s QA JSONL (``.gz`` too): ``question``, ``answers`` (aliases), ``ctxs`` with
  ``isgold``/``hasanswer``. ``distractors: retrieved`` ranks other questions' passages by BM25 similarity to
  the question (for the oracle file, which holds only the gold passage); ``distractors: file`` takes the
  row's own non-gold ``ctxs`` in their order (the paper's 10/20/30-document files);
- ``liu_kv``: Liu et al.'s key-value JSONL (``ordered_kv_records``, ``key``, ``value``): the documents are
  the pairs, the gold pair is moved to the requested index;
- ``jsonl``: a user corpus: ``documents`` (one ``{"title": ..., "text": ...}`` per line, optional ``id``)
  and ``questions`` (``{"question": ..., "answers": [...], "gold": <line index or document id>}``);
  distractors are retrieved from the rest of the corpus as for ``liu_qa``.

Retrieved distractors never contain an answer alias (normalised), so a distractor cannot answer.

A question that contains its own answer (by the task's metric: "what is the main mineral in lithium
batteries" -> "Lithium") is answered right by an echo of the question, in every arm, closed book included:
such rows are left out of the sample pool unless ``keep_self_answering: true``; records state the count.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

_SPEC = ConfigDict(extra="forbid", frozen=True, strict=True)

# Liu et al.'s qa.prompt and closedbook_qa.prompt, as their code reads them (trailing newline stripped)
LIU_QA_TEMPLATE = (
    "Write a high-quality answer for the given question using only the provided search results (some of which "
    "might be irrelevant).\n\n{search_results}\n\nQuestion: {question}\nAnswer:"
)
LIU_CLOSED_BOOK_TEMPLATE = "Question: {question}\nAnswer:"
LIU_DOCUMENT_FORMAT = "Document [{index}](Title: {title}) {text}"
TEMPLATE_FIELDS = frozenset({"search_results", "question"})
DOCUMENT_FIELDS = frozenset({"index", "title", "text"})


class LiuQaSource(BaseModel):
    """Liu et al.'s NaturalQuestions JSONL (``nq-open-oracle.jsonl.gz`` or a multi-document file)."""

    model_config = _SPEC
    format: Literal["liu_qa"]
    path: str = Field(min_length=1, description="the .jsonl or .jsonl.gz file, relative to the task file")
    distractors: Literal["retrieved", "file"] = Field(
        "retrieved", description="retrieved: BM25 over other questions' passages; file: the row's own ctxs"
    )


class LiuKvSource(BaseModel):
    """Liu et al.'s key-value retrieval JSONL (``kv-retrieval-75_keys.jsonl.gz``)."""

    model_config = _SPEC
    format: Literal["liu_kv"]
    path: str = Field(min_length=1, description="the .jsonl or .jsonl.gz file, relative to the task file")


class JsonlSource(BaseModel):
    """A user corpus: a documents file and a questions file (JSONL, ``.gz`` too)."""

    model_config = _SPEC
    format: Literal["jsonl"]
    documents: str = Field(min_length=1, description='one {"title": ..., "text": ...} per line (optional "id")')
    questions: str = Field(min_length=1, description='one {"question", "answers": [...], "gold"} per line')


DocumentSourceSpec = Annotated[Union[LiuQaSource, LiuKvSource, JsonlSource], Field(discriminator="format")]


def check_template(text: str, allowed: frozenset[str], required: frozenset[str]) -> str:
    """``text`` if its ``{fields}`` are all in ``allowed`` and include ``required``; else ValueError with the fix."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ValueError(f"{text[:60]!r} is not a valid template ({exc}); write {{{{ for a literal brace") from None
    unknown, missing = names - allowed, required - names
    if unknown:
        raise ValueError(f"{text[:60]!r} uses {{{sorted(unknown)[0]}}}; only {', '.join(sorted(allowed))} "
                         "are available (write {{ for a literal brace)")
    if missing:
        raise ValueError(f"{text[:60]!r} has no {{{sorted(missing)[0]}}}; add it where it belongs")
    return text


class DocumentsSpec(BaseModel):
    """A task's documents: where they come from, how many, and the prompt text around them."""

    model_config = _SPEC
    source: DocumentSourceSpec
    total: int = Field(10, ge=1, le=1000, description="documents per prompt (gold included)")
    template: str = Field(LIU_QA_TEMPLATE, description="the prompt; {search_results} and {question}")
    document_format: str = Field(LIU_DOCUMENT_FORMAT, description="one document; {index} (1-based), {title}, {text}")
    separator: str = Field("\n", description="text between two documents")
    closed_book_template: str = Field(LIU_CLOSED_BOOK_TEMPLATE, description="the closed_book control's prompt")
    keep_self_answering: bool = Field(
        False, description="keep questions that contain their own answer by the task's metric (an echo of the "
        "question scores right in every arm); left out of the sample pool by default, and counted"
    )

    @field_validator("template")
    @classmethod
    def _template_fields(cls, text: str) -> str:
        return check_template(text, TEMPLATE_FIELDS, TEMPLATE_FIELDS)

    @field_validator("document_format")
    @classmethod
    def _document_fields(cls, text: str) -> str:
        return check_template(text, DOCUMENT_FIELDS, frozenset({"text"}))

    @field_validator("closed_book_template")
    @classmethod
    def _closed_book_fields(cls, text: str) -> str:
        return check_template(text, frozenset({"question"}), frozenset({"question"}))

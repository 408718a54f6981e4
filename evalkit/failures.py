"""Why a finished trial's answer is what it is: one failure type (``FAILURE_TYPES``) from the answer's text alone.

``classify_failure(FailureInput) -> Failure``: pure, over typed inputs the run fills in (``run/trial_failure.py``).

Terms
-----
- *X is in T*: X's normalised tokens (``scoring.normalize_answer``) are a contiguous run of T's, as for the
  ``contains`` metric: "7392" is not in "73921".
- *Gold values*: a multi-value task's required values; else the needle's value and every accepted form of the
  answer (its aliases). A value whose normalised tokens equal a gold's is never "other".
- *The answer's values*, in the order they occur in the answer:

  * with a kind pattern (``tasks/values.answer_value_pattern``): each match of the pattern in the answer, widened
    to the letters and digits around it (and a punctuation mark between two digits, so "12,345" is one value).
    Integer and multi-needle tasks: any number ("7392", "12,345"; the pattern is one digit, so "A7" is a value
    too); uuid and kv tasks, Liu et al.'s key-value documents: a whole UUID (a cut UUID is no value); word tasks:
    a word of evalkit's pass-word list; choice tasks: a value of the task's list; fixed tasks: any number when the
    fixed value holds a digit, else the fixed value itself;
  * without one (free-text answers: documents QA, doc_qa, low_overlap): the answer's first non-empty line, one
    value; a text *holds* it when every distinct content word of the line (``scoring.content_words``) is one of
    the text's (a line without content words: when it is in the text). Without a pattern a refusal cannot be
    told from an invented answer: both are ``absent`` unless the prompt holds their words.

- *Strict part of a gold* (``partial``), a value V and a gold G, normalised, V != G: (a) V's tokens are a
  contiguous run of fewer of G's tokens ("Mary" of "Mary Jones"); (b) V and G are one token each, V is inside G and
  holds at least half of G's characters ("7392" or "3921" of "73921", not "1"); or (c) V is G with exactly one
  character dropped or added ("7921" or "739211" for "73921").

Rules, in order of precedence (the first that applies)
------------------------------------------------------
1. ``correct``: the task's metric says the answer is right (``Score.correct``).
2. A gold value is in the answer, the metric still says wrong (the value sits outside what the metric reads: a
   later line for Liu et al.'s metric, extra words for exact match): ``truncated`` when the budget cut the scored
   part off, else ``format``. (Not for multi-value tasks, whose metric is every required value in the answer.)
3. ``distractor``: a planted look-alike's value (other than a gold value: a ``same_value`` look-alike cannot be told
   from the fact by its value) is in the answer; the one whose run starts first in the answer, ``distractor`` its
   index in the placed distractors. Documents tasks: a value of the answer (not a gold) is in a distractor
   document (every document but the gold one): the first such value, the first document holding it in prompt
   order, ``distractor`` its 0-based position among the documents.
4. The answer's first value that is not a gold value decides: ``partial`` when it is a strict part of a gold;
   ``other_in_prompt`` when the prompt's text holds it (anywhere: the question, an instruction, another needle
   of a multi-needle task, the haystack; the planted distractors were rule 3); else ``absent`` (invented).
   Partial comes first because the gold's parts are in the prompt too (its needle holds them). The prompt's text
   is all of it: the needle holds only gold values and the planted values were rule 3, so cutting them out would
   only call a value that a distractor's sentence holds besides its own value invented.
5. ``partial``: a multi-value answer with no other value holds some, not all, of the required values.
6. ``truncated``: no value of the kind, and the budget ran out before the scored part of the answer ended
   (``scoring.answer_cut_off``, per metric).
7. ``format``: no value of the kind at all: a refusal, prose, a continuation of the haystack, an empty answer.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from evalkit.scoring import content_words, find_token_run, normalize_answer
from evalkit.types import FAILURE_TYPES

__all__ = ["Failure", "FailureInput", "answer_values", "classify_failure", "strict_part"]


@dataclass(frozen=True)
class FailureInput:
    """What the failure type of one finished trial is read from."""

    answer: str  # the scored answer (reasoning removed)
    correct: bool  # the task's metric's verdict
    golds: tuple[str, ...]  # gold values (see the module docstring)
    prompt_text: str  # the whole prompt as text: needle, distractors, question, template and all
    value_pattern: re.Pattern[str] | None = None  # a value of the needle's kind; None: a free-text answer
    multi_value: bool = False  # ``golds`` are required values, each needed for a correct answer
    distractor_values: tuple[str, ...] = ()  # the planted look-alikes' values, in the record's order
    documents: tuple[str, ...] = ()  # documents tasks: each document's text, in prompt order
    gold_document_index: int | None = None  # the gold document's position (None: no gold document)
    cut_off: bool = False  # the budget ran out before the part of the answer the metric scores had ended


@dataclass(frozen=True)
class Failure:
    """A trial's failure type (one of FAILURE_TYPES) and, for ``distractor``, which look-alike was answered."""

    kind: str
    distractor: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAILURE_TYPES:
            raise ValueError(f"failure type {self.kind!r} is not one of {', '.join(FAILURE_TYPES)}")


class _Text:
    """A text searched for values: its normalised tokens and content words, computed once, when first asked."""

    def __init__(self, text: str) -> None:
        self.text = text

    @functools.cached_property
    def tokens(self) -> list[str]:
        return normalize_answer(self.text).split()

    @functools.cached_property
    def words(self) -> frozenset[str]:
        return frozenset(content_words(self.text))


@dataclass(frozen=True)
class _Value:
    """One value of the answer: its normalised tokens, its content words, and whether it is free text."""

    tokens: tuple[str, ...]
    words: frozenset[str]
    free_text: bool

    def held_by(self, text: _Text) -> bool:
        if self.free_text and self.words:
            return self.words <= text.words
        return find_token_run(text.tokens, list(self.tokens)) >= 0


def _is_value_char(text: str, index: int) -> bool:
    char = text[index]
    if char.isalnum():
        return True
    inner = 0 < index < len(text) - 1 and not char.isspace()
    return inner and text[index - 1].isdigit() and text[index + 1].isdigit()  # "12,345" is one number


def answer_values(answer: str, pattern: re.Pattern[str] | None) -> list[str]:
    """The answer's values in answer order (see the module docstring): widened pattern matches, or the first line."""
    if pattern is None:
        line = next((line.strip() for line in answer.splitlines() if line.strip()), "")
        return [line] if normalize_answer(line) else []
    spans: list[tuple[int, int]] = []
    for match in pattern.finditer(answer):
        start, end = match.start(), match.end()
        while start > 0 and _is_value_char(answer, start - 1):
            start -= 1
        while end < len(answer) and _is_value_char(answer, end):
            end += 1
        if spans and start < spans[-1][1]:  # a digit of a number already widened
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return [answer[start:end] for start, end in spans if normalize_answer(answer[start:end])]


def _one_character_apart(shorter: str, longer: str) -> bool:
    return len(longer) == len(shorter) + 1 and any(longer[:i] + longer[i + 1 :] == shorter
                                                   for i in range(len(longer)))


def strict_part(value: list[str], gold: list[str]) -> bool:
    """Whether normalised ``value`` is a strict part of normalised ``gold`` (rules a-c of the module docstring)."""
    if not value or value == gold:
        return False
    if len(value) < len(gold) and find_token_run(gold, value) >= 0:
        return True
    value_text, gold_text = " ".join(value), " ".join(gold)
    if len(value) == len(gold) == 1 and value_text in gold_text and 2 * len(value_text) >= len(gold_text):
        return True
    return _one_character_apart(value_text, gold_text) or _one_character_apart(gold_text, value_text)


def _planted_distractor(given: FailureInput, answer: _Text, golds: list[list[str]]) -> int | None:
    """Index of the planted look-alike whose value starts first in the answer (rule 3), else None."""
    first: tuple[int, int] | None = None
    for index, value in enumerate(given.distractor_values):
        tokens = normalize_answer(value).split()
        if not tokens or tokens in golds:
            continue
        start = find_token_run(answer.tokens, tokens)
        if start >= 0 and (first is None or start < first[0]):
            first = (start, index)
    return None if first is None else first[1]


def _distractor_document(given: FailureInput, others: list[_Value]) -> int | None:
    """Position of the first distractor document holding the first value of the answer found in one, else None."""
    documents = [(i, _Text(text)) for i, text in enumerate(given.documents) if i != given.gold_document_index]
    for value in others:
        for position, document in documents:
            if value.held_by(document):
                return position
    return None


def _values(given: FailureInput) -> list[_Value]:
    free_text = given.value_pattern is None
    return [_Value(tuple(normalize_answer(text).split()), frozenset(content_words(text)), free_text)
            for text in answer_values(given.answer, given.value_pattern)]


def classify_failure(given: FailureInput) -> Failure:
    """The failure type of one finished trial, by the rules of the module docstring (first that applies)."""
    if given.correct:
        return Failure("correct")
    answer = _Text(given.answer)
    golds = [tokens for tokens in (normalize_answer(g).split() for g in given.golds) if tokens]
    gold_in_answer = [find_token_run(answer.tokens, gold) >= 0 for gold in golds]
    if any(gold_in_answer) and not given.multi_value:
        return Failure("truncated" if given.cut_off else "format")
    others = [value for value in _values(given) if list(value.tokens) not in golds]
    planted = _planted_distractor(given, answer, golds)
    if planted is None and given.documents:
        planted = _distractor_document(given, others)
    if planted is not None:
        return Failure("distractor", planted)
    if others:
        first = others[0]
        if any(strict_part(list(first.tokens), gold) for gold in golds):
            return Failure("partial")
        return Failure("other_in_prompt" if first.held_by(_Text(given.prompt_text)) else "absent")
    if any(gold_in_answer):  # a multi-value answer with some of its required values
        return Failure("partial")
    return Failure("truncated" if given.cut_off else "format")

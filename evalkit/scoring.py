"""Answer scoring: SQuAD-style normalisation, whole-token containment and exact match.

``normalize_answer`` follows SQuAD (lowercase, no punctuation, no articles a/an/the, single spaces)
with one change: punctuation becomes a space instead of vanishing, except between two digits, where
it is dropped. So "key:123" is the tokens ``key 123`` (SQuAD would give ``key123``), while digit
groups written with separators still read as one number: "12,345", "12.345", "12'345" and "12-345"
all normalise to ``12345``. Digits split by whitespace ("12 345") stay two tokens and do not match
``12345``. Punctuation is any Unicode punctuation (category P*) or ASCII ``string.punctuation``.

A task picks its primary metric (``metric:``, what ``correct`` means); every metric accepts any alias:

- ``contains`` (default): the normalised gold tokens appear as a contiguous run of whole tokens in the
  normalised output, so gold "123" is not found in "91234" nor "1234";
- ``exact_match``: see below;
- ``liu``: Liu et al. 2023's ``best_subspan_em``, a transcription of their code
  (``lost_in_the_middle/metrics.py`` and ``scripts/evaluate_qa_responses.py``): the output's first line,
  stripped, normalised by their SQuAD ``normalize_answer`` (lower case, ASCII ``string.punctuation``
  deleted, articles a/an/the removed, single spaces) contains a normalised alias as a substring. Their
  quirks are kept: a curly apostrophe or an en dash is not punctuation to them ("Destiny’s Child" does not
  match the alias "Destiny's Child"), and an alias that normalises to nothing (NQ's ``*``) is a substring
  of every answer, so every answer to that question is right;
- ``subspan_em``: evalkit's lenient variant of ``liu``: every Unicode punctuation mark (category P*) is
  deleted too, so typographic and ASCII forms match, and an alias that normalises to nothing is ignored.
  ``best_subspan_em`` is its former name, still accepted so older task files and runs read as before;
- ``keyword_recall``: the share of the gold answer's content words (stop words left out, light suffix
  stemming: "riding" and "ride" are one word) found in the output; correct at ``keyword_threshold``.

``exact_match``: the output's first non-empty line, cut after its first sentence end (". ", "! ",
"? "), with an echoed answer prefix removed (the model repeating text the prompt already put at the
start of its turn), must equal the normalised gold. The whole first line is tried as well, so a
gold with an inner period ("Dr. Who") can still match exactly. Later lines never count.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Sequence

from evalkit.types import Score

METRICS = ("contains", "exact_match", "liu", "subspan_em", "best_subspan_em", "keyword_recall")
# metrics that score only the answer's first line (Liu et al. cut it at the first newline); exact_match reads
# the first non-empty line
WHOLE_LINE_METRICS = ("liu", "subspan_em", "best_subspan_em")
METRIC_LABELS = {"contains": "answer contained", "exact_match": "exact match", "liu": "Liu et al.'s best-subspan EM",
                 "subspan_em": "lenient subspan EM", "best_subspan_em": "lenient subspan EM",
                 "keyword_recall": "keyword recall"}
# what a report says each metric is (one sentence; the module docstring has the detail)
METRIC_NOTES = {
    "liu": "Liu et al.'s best_subspan_em exactly as their code computes it: the answer's first line, with ASCII "
           "punctuation and articles removed, contains a normalised alias (an alias that normalises to nothing "
           "counts every answer right)",
    "subspan_em": "evalkit's lenient variant of Liu et al.'s best_subspan_em: the answer's first line contains a "
                  "normalised alias, with every Unicode punctuation mark removed (not only ASCII) and empty aliases "
                  "ignored",
}
METRIC_NOTES["best_subspan_em"] = METRIC_NOTES["subspan_em"] + " (named best_subspan_em by older task files)"
# function words left out of keyword recall: they carry no part of an answer's content
_STOP_WORDS = frozenset(
    "a an the and or but of to in on at by for with from as is are was were be been being it its this that these "
    "those he she they we you i his her their our your them him us me my do does did not no so than then there "
    "which who whom what when where why how will would can could should may might".split()
)
_SUFFIXES = ("ing", "ed", "es", "s", "e")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCTUATION = frozenset(string.punctuation)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")  # a period inside "3.14" is followed by a digit, not space


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def _replace_punctuation(text: str) -> str:
    """Drop punctuation between two digits, turn every other punctuation mark into a space."""
    out: list[str] = []
    for index, char in enumerate(text):
        if not _is_punctuation(char):
            out.append(char)
            continue
        before = text[index - 1] if index > 0 else ""
        after = text[index + 1] if index + 1 < len(text) else ""
        out.append("" if before.isdigit() and after.isdigit() else " ")
    return "".join(out)


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation (kept out of digit groups) and articles, collapse whitespace."""
    text = _replace_punctuation(text.lower())
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def find_token_run(haystack: list[str], needle: list[str]) -> int:
    """Index of the first place ``needle``'s tokens appear as a contiguous run of ``haystack``'s, else -1."""
    width = len(needle)
    return next((start for start in range(len(haystack) - width + 1) if haystack[start : start + width] == needle), -1)


def _contains_tokens(haystack: list[str], needle: list[str]) -> bool:
    return find_token_run(haystack, needle) >= 0


def _answer_candidates(text: str) -> tuple[str, str]:
    """The first non-empty line of ``text`` cut after its first sentence end, and that whole line."""
    for line in text.splitlines():
        if line.strip():
            return _SENTENCE_END.split(line.strip(), maxsplit=1)[0], line
    return "", ""


def _strip_prefix_tokens(tokens: list[str], prefix: list[str]) -> list[str]:
    if prefix and tokens[: len(prefix)] == prefix:
        return tokens[len(prefix) :]
    return tokens


def score_answer(generated: str, gold: str, answer_prefix: str = "") -> Score:
    """Score a model output against the gold answer (see the module docstring for the rules).

    Raises ValueError when ``gold`` normalises to nothing (e.g. "The." or ""): such a task cannot be
    scored and should be rejected when tasks are loaded.
    """
    gold_tokens = normalize_answer(gold).split()
    if not gold_tokens:
        raise ValueError(f"gold answer {gold!r} is empty after normalisation; it cannot be scored")
    correct = _contains_tokens(normalize_answer(generated).split(), gold_tokens)
    prefix_tokens = normalize_answer(answer_prefix).split()
    exact = any(
        _strip_prefix_tokens(normalize_answer(candidate).split(), prefix_tokens) == gold_tokens
        for candidate in _answer_candidates(generated)
    )
    return Score(correct=correct, exact_match=exact)


def subspan_normalize(text: str) -> str:
    """``subspan_em``'s normalisation: lower case, every punctuation mark (ASCII or Unicode) deleted, articles
    removed, single spaces."""
    text = "".join(char for char in text.lower() if not _is_punctuation(char))
    return " ".join(_ARTICLES.sub(" ", text).split())


def liu_normalize(text: str) -> str:
    """Liu et al.'s ``normalize_answer`` (SQuAD's), step for step: lower case, ASCII ``string.punctuation``
    deleted (a curly apostrophe or an en dash stays), articles a/an/the removed, single spaces."""
    text = "".join(char for char in text.lower() if char not in _ASCII_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _first_line(generated: str) -> str:
    # Liu et al. score only the first line (a model copying the context cannot score); an output opening with a
    # line break has an empty first line
    return generated.split("\n")[0].strip()


def liu_subspan_em(generated: str, aliases: Sequence[str]) -> bool:
    """Liu et al.'s ``best_subspan_em`` on the output's first line: any normalised alias is a substring of it.

    As in their code, an alias that normalises to "" (NQ's ``*``) is a substring of every answer.
    """
    prediction = liu_normalize(_first_line(generated))
    return any(liu_normalize(gold) in prediction for gold in aliases)


def subspan_em(generated: str, aliases: Sequence[str]) -> bool:
    """Whether the output's first line, normalised (``subspan_normalize``), contains any non-empty normalised
    alias: ``liu_subspan_em`` with Unicode punctuation deleted as well and empty aliases ignored."""
    prediction = subspan_normalize(_first_line(generated))
    return any(gold and gold in prediction for gold in map(subspan_normalize, aliases))


def contains_answer(text: str, aliases: Sequence[str], metric: str) -> bool:
    """Whether ``text`` (a question) holds a gold alias by ``metric``'s normalisation, so an echo of it scores right.

    ``liu``: a normalised alias is a substring (one that normalises to nothing is in every text, as in Liu et al.'s
    metric); ``subspan_em``: the same, normalised leniently, empty aliases ignored; the other metrics: an alias's
    normalised tokens are a whole-token run of the text's.
    """
    line = " ".join(text.splitlines())  # the subspan metrics read one line
    if metric == "liu":
        return liu_subspan_em(line, aliases)
    if metric in ("subspan_em", "best_subspan_em"):
        return subspan_em(line, aliases)
    tokens = normalize_answer(text).split()
    golds = (normalize_answer(alias).split() for alias in aliases)
    return any(gold and _contains_tokens(tokens, gold) for gold in golds)


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 2 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """Stemmed content words of ``text`` (normalised, stop words left out), in order."""
    return [_stem(word) for word in normalize_answer(text).split() if word not in _STOP_WORDS]


def keyword_recall(generated: str, answer: str) -> float:
    """Share of the answer's distinct content words present in the output (1.0 when it has none)."""
    wanted = set(content_words(answer))
    if not wanted:
        return 1.0 if normalize_answer(answer) in normalize_answer(generated) else 0.0
    return len(wanted & set(content_words(generated))) / len(wanted)


def score_with_aliases(
    generated: str, aliases: Sequence[str], answer_prefix: str = "", metric: str = "contains",
    keyword_threshold: float = 0.6,
) -> Score:
    """Every metric over the best alias, with ``correct`` the task's primary ``metric`` (one of METRICS).

    An alias that normalises to nothing (NQ's ``*``) is left out of every metric but ``liu`` (which keeps Liu et
    al.'s behaviour); ValueError when no alias is left.
    """
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    scorable = [alias for alias in aliases if normalize_answer(alias)]
    if not scorable:
        raise ValueError(f"every gold alias of {list(aliases)!r} is empty after normalisation; it cannot be scored")
    scores = [score_answer(generated, alias, answer_prefix) for alias in scorable]
    contains, exact = any(s.correct for s in scores), any(s.exact_match for s in scores)
    subspan, liu = subspan_em(generated, scorable), liu_subspan_em(generated, aliases)
    recall = max(keyword_recall(generated, alias) for alias in scorable)
    primary = {"contains": contains, "exact_match": exact, "liu": liu, "subspan_em": subspan,
               "best_subspan_em": subspan, "keyword_recall": recall >= keyword_threshold}[metric]
    return Score(correct=primary, exact_match=exact, metric=metric, best_subspan_em=subspan, liu=liu,
                 keyword_recall=round(recall, 4))


def values_found(generated: str, values: Sequence[str]) -> tuple[bool, ...]:
    """Per value: whether its normalised tokens appear as a whole-token run in the normalised output.

    Scores tasks whose answer has several required values (multi-value, multi-query): the trial is
    correct when all are found, and the share found is its partial credit.
    """
    output_tokens = normalize_answer(generated).split()
    found = []
    for value in values:
        tokens = normalize_answer(value).split()
        if not tokens:
            raise ValueError(f"required value {value!r} is empty after normalisation; it cannot be scored")
        found.append(_contains_tokens(output_tokens, tokens))
    return tuple(found)


def answer_cut_off(extra: object, generated: object, metric: object) -> bool:
    """True when the budget ran out before the part of the answer that ``metric`` scores had ended."""
    if not (isinstance(extra, dict) and extra.get("truncated")):
        return False
    text = generated if isinstance(generated, str) else ""
    if metric in WHOLE_LINE_METRICS:
        return "\n" not in text  # the first line (empty if the answer opens with a newline) never ended
    if metric == "exact_match":
        return "\n" not in text.lstrip()  # the first non-empty line never ended
    return True

"""What a needle's kind of value looks like in text: the check a files or dataset haystack must pass.

The generated haystack is written without digits or task words; a user's text is not, so sentences that hold a
value of the needle's kind (any number for an integer pass key, any UUID for a UUID key, any listed word for a
word or choice value) are left out of a finite haystack: the model could answer with them (a Paul Graham essay's
"number four! 1. Release Early." gave " 1." for a pass key).
"""

from __future__ import annotations

import re

from evalkit.errors import HaystackError
from evalkit.tasks.document_spec import LiuKvSource
from evalkit.tasks.needles import WORDS
from evalkit.tasks.spec import (
    ChoiceValue,
    FixedValue,
    IntegerValue,
    KvGenerator,
    MultiNeedleGenerator,
    TaskSpec,
    UuidValue,
    WordValue,
)

UUID_PATTERN = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


def _any_word(words) -> re.Pattern[str]:
    alternatives = "|".join(map(re.escape, sorted(set(words), key=len, reverse=True)))
    return re.compile(rf"(?<![0-9A-Za-z])(?:{alternatives})(?![0-9A-Za-z])", re.IGNORECASE)


def value_kind_pattern(task: TaskSpec) -> tuple[re.Pattern[str], str] | None:
    """``(pattern, description)`` finding a value of ``task``'s needle kind in a sentence; None if unknown."""
    spec = task.generator if task.generator is not None else task.value
    if isinstance(spec, (IntegerValue, MultiNeedleGenerator)):
        return re.compile(r"\d"), "digits (numbers a pass key could be mistaken for)"
    if isinstance(spec, (UuidValue, KvGenerator)):
        return re.compile(UUID_PATTERN), "UUIDs"
    if isinstance(spec, WordValue):
        return _any_word(WORDS), "words of evalkit's pass-word list"
    if isinstance(spec, ChoiceValue):
        return _any_word(spec.values), "values of the task's value list"
    if isinstance(spec, FixedValue):
        return _any_word([spec.value]), "the fixed value"
    return None


def answer_value_pattern(task: TaskSpec) -> re.Pattern[str] | None:
    """What a value of ``task``'s kind looks like in an answer (``evalkit/failures.py`` reads answers with it).

    The needle kind's pattern (``value_kind_pattern``), except that a fixed value with a digit reads any number (a
    fixed pass key "71432" answered "71431" is a number, not prose); for Liu et al.'s key-value documents, a UUID
    (their values); None where the answer is free text (documents QA, doc_qa, low_overlap).
    """
    if task.documents is not None:
        return re.compile(UUID_PATTERN) if isinstance(task.documents.source, LiuKvSource) else None
    if isinstance(task.value, FixedValue) and task.generator is None and re.search(r"\d", task.value.value):
        return re.compile(r"\d")
    kind = value_kind_pattern(task)
    return kind[0] if kind is not None else None


def drop_matching(sentences: tuple[str, ...], pattern: re.Pattern[str], what: str,
                  where: object) -> tuple[tuple[str, ...], int]:
    """``sentences`` without those ``pattern`` matches, and how many were left out (at least two must stay)."""
    kept = tuple(s for s in sentences if not pattern.search(s))
    if len(kept) < 2:
        raise HaystackError(f"{where}: {len(sentences) - len(kept)} of {len(sentences)} sentences hold {what}, "
                            "which the needle's answer could be confused with; use text without them")
    return kept, len(sentences) - len(kept)

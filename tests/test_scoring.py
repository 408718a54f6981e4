"""Answer normalisation and scoring (evalkit/scoring.py): table-driven unit tests."""

from __future__ import annotations

import pytest

from evalkit.scoring import normalize_answer, score_answer
from evalkit.types import Score


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("  An   apple\tA day\n", "apple day"),
        ("12,345", "12345"),
        ("3.14", "314"),
        ("key:123", "key 123"),
        ("“Paris”…", "paris"),
        ("theatre", "theatre"),  # articles only as whole words
        ("", ""),
    ],
)
def test_normalize_answer(text: str, expected: str) -> None:
    assert normalize_answer(text) == expected


# (generated, gold, answer_prefix, correct, exact_match)
CASES = [
    # containment
    ("The pass key is 48213.", "48213", "", True, False),
    ("48213", "48213", "", True, True),
    ("I could not find it.", "48213", "", False, False),
    # whole tokens only
    ("The number is 91234.", "123", "", False, False),
    ("1234", "123", "", False, False),
    ("Blue whales", "blue whale", "", False, False),
    ("It is the blue whale, of course.", "blue whale", "", True, False),
    # punctuation and digit separators
    ("48,213", "48213", "", True, True),
    ("key:48213", "48213", "", True, False),
    ("(48213)", "48213", "", True, True),
    ("48 213", "48213", "", False, False),  # whitespace splits digit groups: documented
    ("san-francisco", "San Francisco", "", True, True),
    # case and articles
    ("PARIS", "paris", "", True, True),
    ("The Eiffel Tower", "Eiffel Tower", "", True, True),
    ("An apple.", "apple", "", True, True),
    # echoed answer prefix
    ("The magic number is 7731.", "7731", "The magic number is", True, True),
    (" 7731.", "7731", "The magic number is", True, True),
    ("Magic number: 7731", "7731", "The magic number is", True, False),
    # multi-line and multi-sentence output: only the first line/sentence counts for exact match
    ("7731\nI hope this helps!", "7731", "", True, True),
    ("\n\n7731. It was in the middle.", "7731", "", True, True),
    ("Let me think.\n7731", "7731", "", True, False),
    ("Dr. Who", "Dr. Who", "", True, True),
    ("3.5 litres", "3.5", "", True, False),
    # empty output
    ("", "7731", "", False, False),
    ("   \n ", "7731", "The magic number is", False, False),
]


@pytest.mark.parametrize(("generated", "gold", "prefix", "correct", "exact"), CASES)
def test_score_answer(generated: str, gold: str, prefix: str, correct: bool, exact: bool) -> None:
    assert score_answer(generated, gold, answer_prefix=prefix) == Score(correct=correct, exact_match=exact)


@pytest.mark.parametrize("gold", ["", "The.", "  a  "])
def test_gold_that_normalises_to_nothing_is_refused(gold: str) -> None:
    with pytest.raises(ValueError, match="empty after normalisation"):
        score_answer("anything", gold)

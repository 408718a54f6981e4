"""Answer normalisation and scoring (evalkit/scoring.py): table-driven unit tests."""

from __future__ import annotations

import string

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


# ---------------------------------------------------------------- best-subspan EM, keyword recall, aliases

from evalkit.scoring import (  # noqa: E402
    contains_answer, keyword_recall, liu_normalize, liu_subspan_em, score_with_aliases, subspan_em, subspan_normalize,
)


@pytest.mark.parametrize("generated, aliases, expected", [
    (" The Eiffel Tower, in Paris.", ["Eiffel Tower"], True),          # article and punctuation removed
    ("It was the U.S.A. that won", ["USA"], True),                     # Liu deletes punctuation: U.S.A. -> usa
    ("Wilhelm Conrad Röntgen", ["Wilhelm Conrad Röntgen"], True),     # non-ASCII letters kept
    ("Röntgen", ["Wilhelm Conrad Röntgen", "Röntgen"], True),          # any alias counts
    ("Röntgen", ["Wilhelm Conrad Röntgen"], False),                    # a part of the alias does not
    ("\nParis", ["Paris"], False),                                     # only the first line counts (it is empty)
    ("I think so.\nParis", ["Paris"], False),                          # a later line never counts
    ("parisian", ["Paris"], True),                                     # a substring match, as in the paper's code
    ("An apple a day", ["the apple"], True),                           # articles on both sides removed
])
def test_subspan_em_hand_cases(generated, aliases, expected):
    assert subspan_em(generated, aliases) is expected
    assert liu_subspan_em(generated, aliases) is expected  # no Unicode punctuation here: both agree


def test_liu_normalisation_deletes_punctuation_where_evalkits_spaces_it():
    assert liu_normalize("The key:123, (a) test!") == "key123 test"
    assert subspan_normalize("The key:123, (a) test!") == "key123 test"
    assert normalize_answer("The key:123, (a) test!") == "key 123 test"


def _liu_normalize_answer(s: str) -> str:
    """Liu et al.'s normalize_answer (lost_in_the_middle/metrics.py, from SQuAD), transcribed step for step."""
    import regex

    def remove_articles(text):
        return regex.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def _liu_best_subspan_em(model_answer: str, ground_truths: list[str]) -> float:
    """Liu et al.'s scoring of one answer: evaluate_qa_responses.py's first line, then metrics.best_subspan_em."""
    normalized_prediction = _liu_normalize_answer(model_answer.split("\n")[0].strip())
    for ground_truth in ground_truths:
        if _liu_normalize_answer(ground_truth).lower() in normalized_prediction.lower():
            return 1.0
    return 0.0


# the audit's cases: a curly apostrophe and an en dash are not punctuation to Liu et al.; NQ row 1452's alias "*"
# normalises to "", a substring of every answer
LIU_CASES = [
    ("Destiny’s Child", ["Destiny's Child"], False, True),
    ("Destiny's Child", ["Destiny’s Child"], False, True),
    ("21-23 February", ["21–23 February"], False, True),
    ("It was held 21–23 February.", ["21–23 February"], True, True),
    ("I do not know", ["a rotationally symmetric saltire", "the symbol ×", "*"], True, False),
    ("", ["the symbol ×", "*"], True, False),
    ("October 2003 – present", ["October\xa02003\xa0– present"], True, True),
    ("The U.S.A.", ["USA"], True, True),
    ("Röntgen\nWilhelm Conrad Röntgen", ["Wilhelm Conrad Röntgen"], False, False),
]


@pytest.mark.parametrize("generated, aliases, liu, lenient", LIU_CASES)
def test_liu_metric_is_their_code_and_subspan_em_is_the_lenient_one(generated, aliases, liu, lenient):
    assert _liu_best_subspan_em(generated, aliases) == float(liu)  # the transcription agrees with the audit
    assert liu_subspan_em(generated, aliases) is liu
    assert all(liu_normalize(text) == _liu_normalize_answer(text) for text in [generated, *aliases])
    assert subspan_em(generated, aliases) is lenient
    for metric, expected in (("liu", liu), ("subspan_em", lenient), ("best_subspan_em", lenient)):
        score = score_with_aliases(generated, aliases, metric=metric)
        assert score.correct is expected and score.metric == metric
        assert (score.liu, score.best_subspan_em) == (liu, lenient)


@pytest.mark.parametrize("metric", ["contains", "exact_match", "keyword_recall", "subspan_em"])
def test_an_alias_that_normalises_to_nothing_is_left_out_of_the_other_metrics(metric):
    # NQ row 1452's aliases: "*" would match every answer (keyword recall) or could not be scored at all (contains)
    aliases = ["a rotationally symmetric saltire", "the symbol ×", "*"]
    assert not score_with_aliases("I do not know", aliases, metric=metric).correct
    assert score_with_aliases("The symbol ×.", aliases, metric=metric).correct
    with pytest.raises(ValueError, match="every gold alias"):
        score_with_aliases("anything", ["*", "The."], metric=metric)


def test_a_question_contains_its_answer_by_the_metrics_normalisation():
    assert contains_answer("what is the main mineral in lithium batteries", ["Lithium", "lithium"], "contains")
    assert contains_answer("What is the main mineral in Lithium batteries?", ["Lithium"], "liu")
    # whole tokens for contains, substrings for the subspan metrics
    assert not contains_answer("who was the parisian painter", ["Paris"], "contains")
    assert contains_answer("who was the parisian painter", ["Paris"], "liu")
    assert contains_answer("who was the parisian painter", ["Paris"], "subspan_em")
    # NQ row 1452's "*" is in every question by Liu et al.'s metric (every answer scores right), in none by the others
    aliases = ["a rotationally symmetric saltire", "the symbol ×", "*"]
    for metric, expected in (("liu", True), ("subspan_em", False), ("contains", False), ("keyword_recall", False)):
        assert contains_answer("what is the flag of scotland", aliases, metric) is expected
    # a curly apostrophe is not punctuation to Liu et al.
    assert not contains_answer("who sang destiny's child songs", ["Destiny’s Child"], "liu")
    assert contains_answer("who sang destiny's child songs", ["Destiny’s Child"], "subspan_em")


def test_keyword_recall_tolerates_inflection_and_counts_content_words():
    assert keyword_recall("riding a cable car and watching the sunset", "ride a cable car and watch the sunset") == 1.0
    assert keyword_recall("a cable car", "ride a cable car and watch the sunset") == pytest.approx(2 / 5)
    assert keyword_recall("nothing relevant", "the sunset") == 0.0


def test_the_task_metric_decides_correct_and_every_metric_is_kept():
    score = score_with_aliases(" riding a cable car, watching the sunset", ["ride a cable car and watch the sunset"],
                               metric="keyword_recall", keyword_threshold=0.8)
    assert score.correct and score.metric == "keyword_recall" and score.keyword_recall == 1.0
    assert not score.best_subspan_em and not score.exact_match
    strict = score_with_aliases(" riding a cable car", ["ride a cable car and watch the sunset"],
                                metric="keyword_recall", keyword_threshold=0.8)
    assert not strict.correct and strict.keyword_recall == pytest.approx(3 / 5)  # ride, cable, car of five
    aliases = score_with_aliases(" Byron.", ["Ada Byron", "Byron"], metric="exact_match")
    assert aliases.correct and aliases.exact_match
    default = score_with_aliases(" 4123", ["123"])  # contains: whole tokens, so 123 is not in 4123
    assert default.metric == "contains" and not default.correct and default.best_subspan_em
    with pytest.raises(ValueError, match="not one of"):
        score_with_aliases("x", ["x"], metric="bleu")

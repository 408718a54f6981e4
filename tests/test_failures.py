"""The failure type of a finished trial (evalkit/failures.py): one hand-built case per class, and the edges."""

from __future__ import annotations

import re

import pytest

from evalkit.failures import Failure, FailureInput, answer_values, classify_failure, strict_part
from evalkit.tasks import BUILTIN_TASKS_DIR, load_task
from evalkit.tasks.values import UUID_PATTERN, answer_value_pattern
from evalkit.types import FAILURE_TYPES

DIGITS = re.compile(r"\d")  # value_kind_pattern of an integer pass key
# a prompt with the needle (73921), two planted look-alikes (48213, 90517) and a value that is not planted (2024)
PROMPT = ("Some text. The special magic number for Alma is 73921. More text written in 2024. "
          "The special magic number for Boris is 48213. The special magic number for Cleo is 90517. "
          "What is the special magic number for Alma?")


def needle_case(answer: str, correct: bool = False, **changes) -> FailureInput:
    fields = dict(answer=answer, correct=correct, golds=("73921",), prompt_text=PROMPT, value_pattern=DIGITS,
                  distractor_values=("48213", "90517"))
    fields.update(changes)
    return FailureInput(**fields)


def test_correct_is_the_metrics_verdict():
    assert classify_failure(needle_case("73921", correct=True)) == Failure("correct")
    # the metric decides: the same text the metric rejected is not correct
    assert classify_failure(needle_case("73921", correct=False)).kind != "correct"


def test_distractor_names_the_look_alike_answered_first():
    assert classify_failure(needle_case("The number is 90517.")) == Failure("distractor", 1)
    assert classify_failure(needle_case("48213, or maybe 90517")) == Failure("distractor", 0)
    assert classify_failure(needle_case("90517 or 48213")) == Failure("distractor", 1)


def test_a_same_value_look_alike_is_not_told_from_the_gold():
    case = needle_case("It is 73921, said on the third line", distractor_values=("73921",))
    assert classify_failure(case) == Failure("format")  # the gold is there; the metric rejected its form


def test_a_value_in_the_prompt_that_is_not_planted_is_other_in_prompt():
    assert classify_failure(needle_case("The number is 2024.")) == Failure("other_in_prompt")


def test_a_value_found_nowhere_in_the_prompt_is_absent():
    assert classify_failure(needle_case("The number is 55555.")) == Failure("absent")
    # a number that only contains a prompt number's digits is not in the prompt (whole tokens)
    assert classify_failure(needle_case("20245")) == Failure("absent")


def test_partial_is_a_strict_part_of_the_gold():
    assert classify_failure(needle_case("The number is 7392.")) == Failure("partial")  # last digit dropped
    assert classify_failure(needle_case("7921")) == Failure("partial")  # a middle digit dropped
    assert classify_failure(needle_case("739211")) == Failure("partial")  # a digit added
    assert classify_failure(needle_case("1")) == Failure("absent")  # one digit of five is no part


@pytest.mark.parametrize(("value", "gold", "part"), [
    ("7392", "73921", True), ("3921", "73921", True), ("739", "73921", True), ("73", "73921", False),
    ("7921", "73921", True), ("739211", "73921", True), ("73922", "73921", False), ("73921", "73921", False),
    ("mary", "mary jones", True), ("jones", "mary jones", True), ("mary jane", "mary jones", False),
])
def test_strict_part_rules(value, gold, part):
    assert strict_part(value.split(), gold.split()) is part


def test_format_when_the_answer_holds_no_value_of_the_kind():
    assert classify_failure(needle_case("I cannot find a magic number in the text.")) == Failure("format")
    assert classify_failure(needle_case("")) == Failure("format")
    # the gold on a line the metric does not read (Liu et al.'s metric reads the first line)
    assert classify_failure(needle_case("\nThe number is 73921.")) == Failure("format")


def test_truncated_when_the_budget_ran_out_before_any_value():
    assert classify_failure(needle_case("The special magic number for Alma is", cut_off=True)) == Failure("truncated")
    # a value before the cut decides: the budget is not why
    assert classify_failure(needle_case("It is 55555 and the", cut_off=True)) == Failure("absent")


def test_multi_value_answer_with_some_required_values_is_partial():
    case = needle_case("73921 and 11111", golds=("73921", "11111", "22222"), multi_value=True)
    assert classify_failure(case) == Failure("partial")
    other = needle_case("73921 and 2024", golds=("73921", "11111"), multi_value=True)
    assert classify_failure(other) == Failure("other_in_prompt")  # a wrong value beside the right one decides


def test_values_are_widened_numbers_and_whole_uuids():
    assert answer_values("Key: 12,345. Then 7 and A7.", DIGITS) == ["12,345", "7", "A7"]
    uuid = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert answer_values(f"value {uuid}, not 1b4e28ba-2fa1", re.compile(UUID_PATTERN)) == [uuid]
    assert answer_values("\n  Paris, France\nmore", None) == ["Paris, France"]


def test_uuid_answer_from_another_key_of_the_prompt():
    gold, other = "1b4e28ba-2fa1-11d2-883f-0016d3cca427", "9c1d2e3f-aaaa-4bbb-8ccc-123456789abc"
    case = FailureInput(answer=f'"{other}"', correct=False, golds=(gold,), value_pattern=re.compile(UUID_PATTERN),
                        prompt_text=f'{{"k1": "{gold}", "k2": "{other}"}} What is the value of k1?')
    assert classify_failure(case) == Failure("other_in_prompt")
    assert classify_failure(FailureInput(answer=gold[:20], correct=False, golds=(gold,), prompt_text="",
                                         value_pattern=re.compile(UUID_PATTERN))) == Failure("format")


DOCUMENTS = (
    "Document [1](Title: Tower) The Eiffel Tower was finished in 1889 in Paris.",
    "Document [2](Title: Bridge) The Tower Bridge in London opened in 1894.",
    "Document [3](Title: Statue) The Statue of Liberty was dedicated in 1886.",
)


def documents_case(answer: str, **changes) -> FailureInput:
    fields = dict(answer=answer, correct=False, golds=("1889",), documents=DOCUMENTS, gold_document_index=0,
                  prompt_text="\n".join(DOCUMENTS) + "\nQuestion: when was the eiffel tower finished?")
    fields.update(changes)
    return FailureInput(**fields)


def test_documents_answer_matching_a_distractor_document_names_its_position():
    assert classify_failure(documents_case("1886")) == Failure("distractor", 2)
    assert classify_failure(documents_case("It opened in 1894.\nI think.")) == Failure("distractor", 1)
    # the gold document is no distractor: a wrong answer taken from it is other_in_prompt
    assert classify_failure(documents_case("Paris")) == Failure("other_in_prompt")
    assert classify_failure(documents_case("In 1901, I believe.")) == Failure("absent")
    assert classify_failure(documents_case("1889", correct=True)) == Failure("correct")


def test_documents_with_a_kind_pattern_match_values_not_lines():
    case = documents_case("The year is 1894, I think", value_pattern=DIGITS)
    assert classify_failure(case) == Failure("distractor", 1)


def test_an_unknown_failure_type_is_refused():
    assert set(FAILURE_TYPES) == {"correct", "distractor", "other_in_prompt", "absent", "partial", "format",
                                  "truncated"}
    with pytest.raises(ValueError, match="is not one of"):
        Failure("wrong")


UUID = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"


@pytest.mark.parametrize(("task", "answer", "values"), [
    ("passkey", "It is 7392, or 12,345.", ["7392", "12,345"]),  # integer value: any number
    ("multikey", "7392 and 81234", ["7392", "81234"]),  # multi-needle generator: numbers
    ("passkey_uuid", f"{UUID} or 42", [UUID]),  # uuid value: whole UUIDs only
    ("kv_retrieval", f'"{UUID}"', [UUID]),  # kv generator
    ("lost_in_the_middle_kv", f"{UUID}.", [UUID]),  # Liu et al.'s key-value documents
    ("fact", "Saffron, not salt.", ["Saffron"]),  # choice value: a value of the task's list
    ("doc_qa", "Mary Jones\nfounded it", ["Mary Jones"]),  # free text: the first line
    ("lost_in_the_middle_qa", "  \nParis", ["Paris"]),
])
def test_answer_values_of_each_builtin_kind(task, answer, values):
    spec = load_task(BUILTIN_TASKS_DIR / f"{task}.yaml")
    assert answer_values(answer, answer_value_pattern(spec)) == values


def test_a_fixed_value_with_digits_reads_any_number(tmp_path):
    text = (BUILTIN_TASKS_DIR / "passkey.yaml").read_text()
    text = re.sub(r"kind: integer\n  digits: 5[^\n]*", 'kind: fixed\n  value: "71432"', text)
    (tmp_path / "passkey.yaml").write_text(text)
    spec = load_task(tmp_path / "passkey.yaml")
    assert answer_values("71431, not 71432", answer_value_pattern(spec)) == ["71431", "71432"]

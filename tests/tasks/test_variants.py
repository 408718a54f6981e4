"""``needle_variants:`` in task files: what the schema accepts and refuses, the filled variant, and the content
hash of tasks without variants left as it was."""

from __future__ import annotations

import pytest

from evalkit.errors import TaskError
from evalkit.tasks import load_task, load_task_file
from evalkit.tasks.needles import instantiate_needle
from evalkit.tasks.variants import variant_names, with_variant

BASE = """\
name: t
needle: "The code is {value}."
value: {kind: integer, digits: 4}
question: "What is the code?"
"""


def _write(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def test_variants_enter_the_hash_and_fill_with_the_needles_value(tmp_path):
    plain = load_task_file(_write(tmp_path, BASE))
    spec = load_task_file(_write(tmp_path, BASE + 'needle_variants:\n  low: "Type {value} on the pad."\n'
                                              '  high: "The code is {value}, the code."\n'))
    assert spec.content_hash() != plain.content_hash()
    assert variant_names(spec) == ("low", "high") and variant_names(plain) == ()
    needle = instantiate_needle(spec, seed=3)
    low = with_variant(spec, needle, "low")
    assert low.needle == f"Type {needle.value} on the pad." and low.value == needle.value
    assert (low.question, low.answer) == (needle.question, needle.answer)
    assert with_variant(spec, needle, None) is needle
    with pytest.raises(TaskError, match=r"'mid' is not one of its needle_variants \(low, high\)"):
        with_variant(spec, needle, "mid")


@pytest.mark.parametrize("extra, field, words", [
    ('needle_variants:\n  low: "Type it on the pad."\n', "needle_variants", "{value}"),
    ('needle_variants: {}\n', "needle_variants", "at least 1"),
    ('needle_variants:\n  "a b": "Type {value}."\n', "needle_variants", "use letters, digits"),
])
def test_bad_variants_are_refused_in_one_line(tmp_path, extra, field, words):
    with pytest.raises(TaskError) as err:
        load_task_file(_write(tmp_path, BASE + extra))
    message = str(err.value)
    assert "\n" not in message and field in message and words in message


def test_variants_need_a_needle_of_the_tasks_own(tmp_path):
    text = 'name: t\ngenerator: {kind: multikey}\nneedle_variants:\n  low: "Type {value}."\n'
    with pytest.raises(TaskError, match="needle_variants.*add one or remove them"):
        load_task_file(_write(tmp_path, text))


def test_similarity_task_grades_its_variants_over_a_digit_free_wikipedia_haystack():
    from evalkit.prompt.similarity import needle_similarity
    from evalkit.tasks.haystacks import FileHaystack

    spec = load_task("similarity")
    haystack = spec.loaded_haystack
    assert isinstance(haystack, FileHaystack) and haystack.files[0].name == "wikipedia_nq.txt"
    assert haystack.dropped_sentences == 0 and len(haystack.units) > 2000  # every sentence is usable
    assert haystack.files[0].stat().st_size < 300_000
    needle = instantiate_needle(spec, seed=0)
    overlap = {name: needle_similarity(needle.question, with_variant(spec, needle, name).needle, []).overlap
               for name in variant_names(spec)}
    assert overlap == {"high": 1.0, "medium": 0.6, "low": 0.0}

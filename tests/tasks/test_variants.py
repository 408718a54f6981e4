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

# content hashes of the built-in tasks before needle_variants existed (commit f1ccaec): trial ids depend on them
HASHES_BEFORE = {
    "doc_qa": "57426b95ab39cb69", "fact": "6b10026466522553", "kv_retrieval": "d0e1a48b3eabad1b",
    "lost_in_the_middle_kv": "cc07657b86248539", "lost_in_the_middle_qa": "ef312e8c0d85c156",
    "low_overlap": "fc80ff63e10c86bd", "multikey": "96cdb7dea4c11e62", "multiquery": "749e9e5a092a0c0d",
    "multivalue": "0987a28230996344", "passkey": "257731412662dcfb", "passkey_classic": "cc127210c46f071c",
    "passkey_uuid": "168d9d6d53234b5a", "passkey_word": "e00229bac9c327e9",
}


def _write(tmp_path, text):
    path = tmp_path / "t.yaml"
    path.write_text(text)
    return path


def test_existing_tasks_keep_their_content_hash():
    assert {name: load_task(name).content_hash() for name in HASHES_BEFORE} == HASHES_BEFORE


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

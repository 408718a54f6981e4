"""A task's ``key:`` and ``distractors:`` blocks: validation with one-line errors, draws per seed, content hash."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from evalkit.errors import TaskError
from evalkit.tasks import instantiate_needle, list_tasks, load_task
from evalkit.tasks.needles import answer_candidates, distractor_pool, distractors_for
from evalkit.tasks.spec import TaskSpec

REPO = Path(__file__).resolve().parents[2]
PASSKEY = yaml.safe_load((REPO / "tasks" / "passkey.yaml").read_text())
DISTRACTORS = yaml.safe_load((REPO / "tasks" / "distractors.yaml").read_text())
NAMES = {"kind": "choice", "values": ["Orvane", "Velquist", "Tamsberg", "Quorlin", "Fendrake", "Ystrid"]}

# every built-in task's hash before keys, distractors and needle variants existed (commit f1ccaec): trial ids and
# resumes rest on them
HASHES_BEFORE = {
    "doc_qa": "57426b95ab39cb69", "fact": "6b10026466522553", "kv_retrieval": "d0e1a48b3eabad1b",
    "lost_in_the_middle_kv": "cc07657b86248539", "lost_in_the_middle_qa": "ef312e8c0d85c156",
    "low_overlap": "fc80ff63e10c86bd", "multikey": "96cdb7dea4c11e62", "multiquery": "749e9e5a092a0c0d",
    "multivalue": "0987a28230996344", "passkey": "257731412662dcfb", "passkey_classic": "cc127210c46f071c",
    "passkey_uuid": "168d9d6d53234b5a", "passkey_word": "e00229bac9c327e9",
}


def _write(folder: Path, **changes: object) -> Path:
    path = folder / "bad.yaml"
    path.write_text(yaml.safe_dump({**DISTRACTORS, "name": "bad", **changes}, sort_keys=False))
    return path


def test_existing_tasks_keep_their_content_hash():
    hashes = {t.name: t.content_hash() for t in list_tasks() if t.name in HASHES_BEFORE}
    assert hashes == HASHES_BEFORE
    # unset blocks leave the hash alone; set ones (even at their defaults) change it
    assert TaskSpec.model_validate({**PASSKEY, "key": None, "distractors": None}).content_hash() == HASHES_BEFORE[
        "passkey"]
    with_key = TaskSpec.model_validate({**PASSKEY, "key": NAMES})
    assert with_key.content_hash() != HASHES_BEFORE["passkey"]
    base = TaskSpec.model_validate(DISTRACTORS)
    fewer = TaskSpec.model_validate({**DISTRACTORS, "distractors": {"count": 2}})
    assert base.content_hash() != fewer.content_hash()


def test_key_is_drawn_per_seed_after_the_value():
    task = load_task("distractors")
    plain = TaskSpec.model_validate({**PASSKEY, "needle": "The pass key is {value}."})
    keyed = TaskSpec.model_validate({**PASSKEY, "needle": "The pass key of {key} is {value}.", "key": NAMES,
                                     "question": "What is the pass key of {key}?"})
    for seed in range(20):
        a, b = instantiate_needle(plain, seed), instantiate_needle(keyed, seed)
        assert a.value == b.value and a.key == "" and b.key in NAMES["values"]  # the value draw is unchanged
        assert b.needle == f"The pass key of {b.key} is {b.value}."
        assert b.question == f"What is the pass key of {b.key}?"
        assert b.key in answer_candidates(b)  # the haystack never names the asked key
    keys = {instantiate_needle(task, seed).key for seed in range(30)}
    assert len(keys) > 10 and instantiate_needle(task, 7) == instantiate_needle(task, 7)


@pytest.mark.parametrize("kind", ["other_key", "same_value", "variant"])
def test_look_alikes_differ_as_their_kind_says(kind):
    variants = ["A magic number for {key} was once {value}.", "The magic numbers for {key} do not include {value}."]
    block = {"count": 5, "kind": kind, **({"variants": variants} if kind == "variant" else {})}
    task = TaskSpec.model_validate({**DISTRACTORS, "distractors": block})
    for seed in range(25):
        needle = instantiate_needle(task, seed)
        drawn = needle.distractors
        assert len(drawn) == 5 and all(d.kind == kind for d in drawn)
        keys, values = [d.key for d in drawn], [d.value for d in drawn]
        if kind == "same_value":
            assert values == [needle.value] * 5
        else:
            assert len(set(values)) == 5 and needle.value not in values and all(len(v) == 7 for v in values)
        if kind == "variant":
            assert keys == [needle.key] * 5
            assert [d.text for d in drawn[:2]] == [v.format(key=needle.key, value=x) for v, x in zip(variants, values)]
        else:
            assert len(set(keys)) == 5 and needle.key not in keys
            assert all(d.text == f"One of the special magic numbers for {d.key} is: {d.value}." for d in drawn)
        assert needle.needle not in {d.text for d in drawn}


def test_draws_are_a_stream_whose_start_any_count_shares():
    task = load_task("distractors")
    for seed in range(10):
        needle = instantiate_needle(task, seed)
        pool = distractor_pool(task, needle, seed)
        assert len(pool) == 32 and pool[:4] == needle.distractors
        assert distractors_for(task, needle, seed, 9) == pool[:9] and distractors_for(task, needle, seed, 0) == ()
    without = TaskSpec.model_validate({k: v for k, v in DISTRACTORS.items() if k != "distractors"})
    assert all(instantiate_needle(without, s).needle == instantiate_needle(task, s).needle for s in range(10))
    assert instantiate_needle(without, 0).distractors == ()
    # a small key list bounds the pool: 6 names leave 5 other keys
    small = TaskSpec.model_validate({**DISTRACTORS, "key": NAMES, "distractors": {"count": 5}})
    assert len(distractor_pool(small, instantiate_needle(small, 3), 3)) == 5


def test_multi_needle_tasks_draw_magic_number_look_alikes():
    raw = yaml.safe_load((REPO / "tasks" / "multivalue.yaml").read_text())
    task = TaskSpec.model_validate({**raw, "distractors": {"count": 6, "kind": "same_value"}})
    for seed in range(10):
        needle = instantiate_needle(task, seed)
        assert [d.value for d in needle.distractors] == [needle.value] * 6
        assert not {d.key for d in needle.distractors} & set(needle.facts["keys"])
        assert len({d.key for d in needle.distractors}) == 6
    raw = yaml.safe_load((REPO / "tasks" / "multikey.yaml").read_text())
    variant = "A special magic number for {key} was {value} once, not now."
    task = TaskSpec.model_validate({**raw, "distractors": {"count": 2, "kind": "variant", "variants": [variant]}})
    needle = instantiate_needle(task, 5)
    assert [d.text for d in needle.distractors] == [variant.format(key=needle.facts["keys"][0], value=d.value)
                                                    for d in needle.distractors]
    assert not {d.value for d in needle.distractors} & set(needle.needle_values)


BAD = [
    ({"needle": "The magic number is {value}."},
     "distractors.kind: other_key look-alikes differ from the needle in {key}, and the needle 'The magic number is "
     "{value}.' has none; put {key} in needle (with a `key:` block) or use kind: variant"),
    ({"needle": "The magic number is {value}.", "distractors": {"kind": "same_value"}},
     "distractors.kind: same_value look-alikes differ from the needle in {key}"),
    ({"distractors": {"kind": "variant"}},
     "distractors.variants: kind: variant needs near-miss templates; list them under `variants:`"),
    ({"distractors": {"variants": ["x {value}"]}}, "distractors.variants: is used by kind: variant only"),
    ({"distractors": {"kind": "variant", "variants": ["No value here."]}},
     "distractors.variants[0]: 'No value here.' has no {value}"),
    ({"distractors": {"kind": "varient"}}, "distractors.kind: 'varient' is not one of other_key, same_value, variant"),
    ({"distractors": {"count": 33}}, "distractors.count: 33 is not within [0, 32]"),
    ({"distractors": {"placement": "middle"}},
     "distractors.placement: 'middle' is not one of spread, before, after, around; use one of these or a list"),
    ({"distractors": {"placement": [0.1, 1.5]}},
     "distractors.placement: [1] is 1.5, not a depth; write a number from 0 to 1"),
    ({"distractors": {"placement": []}}, "distractors.placement: [] is empty; list one depth"),
    ({"distractors": {"placement": [0.1, 0.2]}},
     "distractors.placement: lists 2 depths for count 4; give one depth per distractor"),
    ({"distractors": {"count": 6}, "key": NAMES},
     "distractors.count: 6 other_key look-alikes need 7 distinct keys and key: can draw fewer"),
    ({"distractors": {"count": 9}, "value": {"kind": "integer", "digits": 1}},
     "distractors.count: 9 other_key look-alikes need 10 distinct values"),
    ({"key": None}, "needle: 'One of the special magic numbers for {key} is: {value}.' uses {key}; only {value} is "
                    "available without a `key:` block; add `key:`"),
    ({"question": "What is {keys}?"}, "question: 'What is {keys}?' uses {keys}; only {value} and {key} are available"),
    ({"distractors": {"gap": 0}}, "distractors.gap: 0 is not above 0"),
    ({"distractors": {"cuont": 3}}, "distractors.cuont: unknown key 'cuont'; did you mean 'count'?"),
]


@pytest.mark.parametrize("changes, expected", BAD, ids=[b[1].split(":")[0] + str(i) for i, b in enumerate(BAD)])
def test_bad_blocks_give_one_line_naming_file_field_and_fix(tmp_path, changes, expected):
    path = _write(tmp_path, **changes)
    with pytest.raises(TaskError) as info:
        load_task(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message


@pytest.mark.parametrize("task, field", [("kv_retrieval", "a kv_retrieval generator makes its own needle"),
                                         ("doc_qa", "a doc_qa generator makes its own needle"),
                                         ("lost_in_the_middle_qa", "a documents task's distractors are its other "
                                                                   "documents")])
def test_tasks_that_cannot_take_look_alikes_refuse_them(tmp_path, task, field):
    raw = yaml.safe_load((REPO / "tasks" / f"{task}.yaml").read_text())
    path = tmp_path / f"{task}.yaml"
    raw_text = {**raw, "distractors": {"count": 2}}
    if "documents" in raw:  # its data path is relative to the built-in folder
        raw_text["documents"] = {**raw["documents"], "source": {**raw["documents"]["source"], "path": str(
            REPO / "tasks" / raw["documents"]["source"]["path"])}}
    path.write_text(yaml.safe_dump(raw_text, sort_keys=False))
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert str(info.value).startswith(f"{path}: distractors: {field}") and "\n" not in str(info.value)


def test_generator_tasks_refuse_a_key_block(tmp_path):
    raw = yaml.safe_load((REPO / "tasks" / "multikey.yaml").read_text())
    path = tmp_path / "multikey.yaml"
    path.write_text(yaml.safe_dump({**raw, "key": NAMES}, sort_keys=False))
    with pytest.raises(TaskError, match=r"multikey.yaml: key: a multikey generator draws its own keys; remove key"):
        load_task(path)

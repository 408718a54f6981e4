"""Tasks: built-in specs, needle values, the registry, and haystack sources."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from evalkit.config.schema import ModelConfig
from evalkit.errors import HaystackError, TaskError
from evalkit.tasks import (
    WORDS,
    FileHaystack,
    GeneratedHaystack,
    HaystackSource,
    TaskSpec,
    find_task,
    haystack_for_task,
    haystack_from_spec,
    instantiate_needle,
    list_tasks,
    load_task,
    prompt_parts,
    split_sentences,
)

REPO = Path(__file__).resolve().parents[2]
PASSKEY = yaml.safe_load((REPO / "tasks" / "passkey.yaml").read_text())


def write_task(folder: Path, file_name: str, **changes: object) -> Path:
    """A copy of the built-in passkey task saved as FOLDER/FILE_NAME.yaml, with some fields changed."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file_name}.yaml"
    path.write_text(yaml.safe_dump({**PASSKEY, "name": file_name, **changes}, sort_keys=False))
    return path


def take(source: HaystackSource, seed: int, n: int) -> list[str]:
    return list(itertools.islice(source.sentences(seed), n))


# ---------------------------------------------------------------- built-in tasks and needles


def test_builtin_tasks_load_and_are_listed():
    passkey, fact = load_task("passkey"), load_task("fact")
    assert passkey.question == "What is the pass key? The pass key is a number." and passkey.answer == "{value}"
    assert passkey.answer_prefix == "The pass key is the number" and "memorize" in passkey.instructions
    assert (passkey.value.kind, passkey.value.digits, passkey.haystack.source) == ("integer", 5, "generated")
    assert fact.value.kind == "choice" and len(fact.value.values) >= 20 and fact.haystack.source == "generated"
    assert {"passkey", "fact"} <= {t.name for t in list_tasks()}


def test_needles_are_deterministic_per_seed_and_vary_across_seeds():
    task = load_task("passkey")
    assert instantiate_needle(task, 11) == instantiate_needle(task, 11)
    values = [instantiate_needle(task, seed).value for seed in range(200)]
    assert len(set(values)) > 190
    for seed, value in enumerate(values[:50]):
        needle = instantiate_needle(task, seed)
        assert re.fullmatch(r"[1-9][0-9]{4}", value)
        assert needle.needle == f"The pass key is {value}. Remember it. {value} is the pass key."
        assert needle.answer == value and needle.question == "What is the pass key? The pass key is a number."


def test_choice_word_and_uuid_values():
    fact = load_task("fact")
    drawn = {instantiate_needle(fact, seed).value for seed in range(300)}
    assert drawn == set(fact.value.values)  # uniform enough that 300 draws hit all ~30 choices
    word_task = TaskSpec.model_validate({**PASSKEY, "value": {"kind": "word"}})
    words = {instantiate_needle(word_task, seed).value for seed in range(100)}
    assert words <= set(WORDS) and len(words) > 60 and len(WORDS) >= 200
    uuid_task = TaskSpec.model_validate({**PASSKEY, "value": {"kind": "uuid"}})
    value = instantiate_needle(uuid_task, 3).value
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value)
    assert value != instantiate_needle(uuid_task, 4).value


@pytest.mark.parametrize("digits", [1, 3, 12])
def test_integer_values_have_exactly_the_requested_digits(digits):
    task = TaskSpec.model_validate({**PASSKEY, "value": {"kind": "integer", "digits": digits}})
    for seed in range(40):
        assert re.fullmatch(rf"[1-9][0-9]{{{digits - 1}}}", instantiate_needle(task, seed).value)


def test_prompt_parts_take_system_prompt_and_template_use_from_the_model():
    task = load_task("passkey")
    needle = instantiate_needle(task, 0)
    parts = prompt_parts(task, needle, ModelConfig(name="m", system_prompt="Be brief.", chat_template=False))
    assert (parts.system_prompt, parts.use_chat_template) == ("Be brief.", False)
    assert (parts.needle, parts.question, parts.answer_prefix) == (needle.needle, task.question, "The pass key is the number")
    assert parts.instructions == task.instructions
    assert prompt_parts(task, needle, ModelConfig(name="m")).system_prompt is None


def test_content_hash_is_stable_and_follows_the_content():
    task = load_task("passkey")
    assert task.content_hash() == load_task("passkey").content_hash() and len(task.content_hash()) == 16
    edited = TaskSpec.model_validate({**PASSKEY, "question": "What is the code?"})
    assert edited.content_hash() != task.content_hash()
    assert TaskSpec.model_validate(PASSKEY).content_hash() == task.content_hash()


# ---------------------------------------------------------------- registry and task file errors


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(TaskError) as info:
        load_task("passkee")
    message = str(info.value)
    assert "unknown task 'passkee'" in message and "did you mean 'passkey'?" in message
    assert re.search(r"known tasks: .*fact.*passkey", message)


@pytest.mark.parametrize("name", ["..", "../passkey", "a b", "..\\passkey", "pass*", ""])
def test_names_that_could_leave_a_search_folder_are_refused(tmp_path, name):
    write_task(tmp_path / "outside", "passkey")  # a file the traversal would reach
    with pytest.raises(TaskError):
        find_task(name, [tmp_path / "inside"])


def test_task_name_field_must_be_a_plain_name_matching_the_file(tmp_path):
    with pytest.raises(TaskError, match=r"evil\.yaml: name: '\.\./evil' does not match"):
        load_task(write_task(tmp_path, "evil", name="../evil"))
    with pytest.raises(TaskError, match=r"other\.yaml: name: 'passkey' differs from the file name 'other'"):
        load_task(write_task(tmp_path, "other", name="passkey"))


def test_search_dirs_env_and_paths(tmp_path, monkeypatch):
    write_task(tmp_path / "mine", "passkey", question="Which code?")
    assert load_task("passkey", [tmp_path / "mine"]).question == "Which code?"  # given dirs shadow built-ins
    assert load_task("passkey").question == "What is the pass key? The pass key is a number."
    write_task(tmp_path / "env", "envtask")
    monkeypatch.setenv("EVALKIT_TASKS_PATH", str(tmp_path / "env"))
    assert load_task("envtask").name == "envtask" and "envtask" in {t.name for t in list_tasks()}
    monkeypatch.chdir(tmp_path)
    assert load_task("mine/passkey.yaml").question == "Which code?"  # a path is relative to the cwd
    with pytest.raises(TaskError, match="task file not found"):
        load_task("mine/missing.yaml")


BAD_TASKS = [
    ({"value": {"kind": "integr"}}, "value.kind: 'integr' is not one of integer, choice, word, uuid"),
    ({"value": {"digits": 3}}, "value.kind: required key is missing; add `kind:`"),
    ({"value": {"kind": "integer", "dgits": 3}}, "value.dgits: unknown key 'dgits'; did you mean 'digits'?"),
    ({"value": {"kind": "integer", "digits": 0}}, "value.digits: 0 is not within [1, 40]"),
    ({"value": {"kind": "choice", "values": ["a", "a"]}}, "value.values: 'a' appears twice"),
    ({"needle": "Nothing to find here."}, "needle: 'Nothing to find here.' has no {value}"),
    ({"question": "What is {key}?"}, "question: 'What is {key}?' uses {key}; only {value} is available"),
    ({"answer": "{value"}, "answer: '{value' is not a valid template"),
    ({"haystack": {"source": "web"}}, "haystack.source: 'web' is not one of generated, files, noise, kv_pairs, documents, dataset"),
    ({"haystack": {"source": "files"}}, "haystack.path: required key is missing"),
    ({"questoin": "x"}, "questoin: unknown key 'questoin'; did you mean 'question'?"),
]


@pytest.mark.parametrize("changes, expected", BAD_TASKS, ids=[b[1].split(":")[0] for b in BAD_TASKS])
def test_bad_task_files_name_file_field_and_fix(tmp_path, changes, expected):
    path = write_task(tmp_path, "bad", **changes)
    with pytest.raises(TaskError) as info:
        load_task(path)
    assert str(info.value).startswith(f"{path}: {expected}")


# ---------------------------------------------------------------- generated haystack

FORBIDDEN = ("key", "pass key", "passkey", "password", "soup", "ingredient", "secret", "recipe", "grandma", "rosa",
             "remember", "memor")


def test_generated_haystack_is_varied_clean_and_deterministic():
    sentences = take(GeneratedHaystack(), 0, 200)
    assert len(set(sentences)) >= 180
    assert all(a != b for a, b in zip(sentences, sentences[1:]))
    assert sentences == take(GeneratedHaystack(), 0, 200)
    assert sentences[:20] != take(GeneratedHaystack(), 1, 20)
    text = " ".join(take(GeneratedHaystack(), 5, 2000))
    assert not re.search(r"\d", text)
    lowered = text.lower()
    assert not [w for w in FORBIDDEN if w in lowered]
    for sentence in sentences:
        assert sentence[0].isupper() and sentence[-1] in ".!?" and "\n" not in sentence


def test_generated_haystack_never_uses_a_needle_value():
    words = set(re.findall(r"[a-z]+", " ".join(take(GeneratedHaystack(), 9, 3000)).lower()))
    values = set(WORDS) | set(load_task("fact").value.values)
    assert not {v for v in values if v in words or v + "s" in words}


# ---------------------------------------------------------------- file haystacks


def test_split_sentences_collapses_whitespace():
    text = "First line\nstill first.  Second?\n\nThird! \"Quoted.\" Tail without end"
    # nothing is added to the text: a cut passage keeps its end as it is
    assert split_sentences(text) == ["First line still first.", "Second?", "Third!", '"Quoted."', "Tail without end"]


def test_split_sentences_keeps_paragraph_breaks_as_boundaries():
    text = "Lessons\n\nthe pace was accelerating.We learned a lot.\n  \nnumber four! 1. Release Early.\n"
    assert split_sentences(text) == ["Lessons", "the pace was accelerating.", "We learned a lot.", "number four!",
                                     "1.", "Release Early."]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab .!?\n\t\"")), max_size=60))
def test_split_sentences_keeps_every_word_in_order_and_ends_each_sentence(text):
    sentences = split_sentences(text)
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n[ \t]*\n", text)]
    for sentence in sentences:
        assert "\n" not in sentence and sentence == sentence.strip() and sentence
        # a sentence ends with terminal punctuation, or it is where a paragraph (or the text) ends
        assert re.search(r"[.!?][\"]*$", sentence) or any(p.endswith(sentence) for p in paragraphs)
    assert " ".join(sentences) == " ".join(text.split())  # every word in order, nothing added


def test_file_haystack_cycles_from_a_seeded_offset(tmp_path):
    (tmp_path / "a.txt").write_text("Alpha one. Alpha two.\nAlpha three.")
    (tmp_path / "b.txt").write_text("Beta one! Beta two?")
    source = FileHaystack(str(tmp_path / "*.txt"))
    all_five = ["Alpha one.", "Alpha two.", "Alpha three.", "Beta one!", "Beta two?"]
    assert [f.name for f in source.files] == ["a.txt", "b.txt"]
    for seed in range(6):
        stream = take(source, seed, 12)
        assert stream == take(source, seed, 12)
        start = all_five.index(stream[0])
        assert stream == [all_five[(start + i) % 5] for i in range(12)]
    assert len({take(source, seed, 1)[0] for seed in range(40)}) > 1
    assert take(FileHaystack([tmp_path / "b.txt"]), 0, 3)[0] in ("Beta one!", "Beta two?")


@pytest.mark.parametrize("content, expected", [("", "file is empty"), ("   \n\n", "file is empty"),
                                               ("Only one sentence here.", "only one sentence found")])
def test_file_haystack_refuses_files_without_two_sentences(tmp_path, content, expected):
    (tmp_path / "bad.txt").write_text(content)
    with pytest.raises(HaystackError, match=rf"bad\.txt: {expected}"):
        FileHaystack(tmp_path / "bad.txt")


def test_file_haystack_refuses_missing_paths_and_empty_globs(tmp_path):
    with pytest.raises(HaystackError, match=r"missing\.txt: file not found"):
        FileHaystack(tmp_path / "missing.txt")
    with pytest.raises(HaystackError, match=r"\*\.md: no file matches"):
        FileHaystack(str(tmp_path / "*.md"))


def test_files_haystack_of_a_task_is_relative_to_the_task_file(tmp_path, monkeypatch):
    (tmp_path / "tasks" / "texts").mkdir(parents=True)
    (tmp_path / "tasks" / "texts" / "story.txt").write_text("It rained. The roads were wet. Nobody went out.")
    write_task(tmp_path / "tasks", "story", haystack={"source": "files", "path": "texts/*.txt"})
    monkeypatch.chdir(tmp_path / "tasks" / "texts")  # the cwd must not matter
    task = load_task("story", [tmp_path / "tasks"])
    assert set(take(haystack_for_task(task), 0, 3)) == {"It rained.", "The roads were wet.", "Nobody went out."}
    write_task(tmp_path / "tasks", "nofiles", haystack={"source": "files", "path": "none/*.txt"})
    with pytest.raises(HaystackError, match=r"nofiles\.yaml: haystack: .*none/\*\.txt: no file matches"):
        load_task("nofiles", [tmp_path / "tasks"])


def test_unknown_haystack_source_lists_the_known_ones(tmp_path):
    with pytest.raises(HaystackError, match="'web' is not a known source; use one of dataset, documents, files, generated, kv_pairs, noise"):
        haystack_from_spec(SimpleNamespace(source="web"), tmp_path)


def test_a_glob_skips_and_counts_unusable_files_but_a_named_file_must_be_usable(tmp_path, caplog):
    """D19: one tiny file among the matches is skipped (and counted), not fatal; named alone it is refused."""
    (tmp_path / "essay.txt").write_text("It rained. The roads were wet. Nobody went out.")
    (tmp_path / "rss.txt").write_text("Only one sentence here.")
    (tmp_path / "latin1.txt").write_bytes("Caf\xe9 one. Caf\xe9 two.".encode("latin-1"))
    with caplog.at_level("WARNING"):
        source = FileHaystack(str(tmp_path / "*.txt"))
    assert [f.name for f in source.files] == ["essay.txt"]
    assert sorted(p.name for p, _ in source.skipped) == ["latin1.txt", "rss.txt"]
    assert "skipped 2 unusable file(s) of 3" in caplog.text and "rss.txt (only one sentence found)" in caplog.text
    with pytest.raises(HaystackError, match=r"rss\.txt: only one sentence found"):
        FileHaystack(tmp_path / "rss.txt")
    with pytest.raises(HaystackError, match=r"no usable text file: .*latin1\.txt \(not UTF-8 text\)"):
        FileHaystack([str(tmp_path / "rss.txt*"), str(tmp_path / "latin1.txt*")])


def test_files_haystack_path_takes_a_list_with_exclusions(tmp_path):
    """D19: `path` may list paths and globs; an entry starting with ! leaves files out."""
    (tmp_path / "tasks" / "texts").mkdir(parents=True)
    (tmp_path / "tasks" / "texts" / "a.txt").write_text("Alpha one. Alpha two.")
    (tmp_path / "tasks" / "texts" / "b.txt").write_text("Beta one. Beta two.")
    (tmp_path / "tasks" / "more.md").write_text("More one. More two.")
    write_task(tmp_path / "tasks", "listed", haystack={"source": "files", "path": ["texts/*.txt", "more.md", "!texts/b.txt"]})
    source = haystack_for_task(load_task("listed", [tmp_path / "tasks"]))
    assert [f.name for f in source.files] == ["a.txt", "more.md"]
    assert set(take(source, 0, 4)) == {"Alpha one.", "Alpha two.", "More one.", "More two."}


def test_skipped_files_are_reported_once_per_task_load(tmp_path, caplog):
    """D19: the task's files are read once at load; preparing the run reuses them (one warning, not two)."""
    (tmp_path / "tasks" / "texts").mkdir(parents=True)
    (tmp_path / "tasks" / "texts" / "a.txt").write_text("Alpha one. Alpha two.")
    (tmp_path / "tasks" / "texts" / "rss.txt").write_text("Tiny.")
    write_task(tmp_path / "tasks", "once", haystack={"source": "files", "path": "texts/*.txt"})
    with caplog.at_level("WARNING"):
        task = load_task("once", [tmp_path / "tasks"])
        assert haystack_for_task(task) is haystack_for_task(task)
    assert caplog.text.count("skipped 1 unusable file(s) of 2") == 1

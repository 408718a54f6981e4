"""Needle kinds (tasks/kinds.py) and the extra haystack sources (tasks/sources.py)."""

from __future__ import annotations

import itertools
import re

import pytest

from evalkit.config.schema import EvalConfig
from evalkit.prompt.controls import TrialPrompt, build_trial_prompt, score_trial
from evalkit.errors import HaystackError, TaskError
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.prompt.builder import PromptBuilder
from evalkit.scoring import values_found
from evalkit.tasks import FileHaystack, haystack_for_task, instantiate_needle, load_task
from evalkit.tasks.entities import CHARACTERS, LANDMARKS, lexical_overlap
from evalkit.tasks.prose import generate_sentences
from evalkit.tasks.haystacks import DatasetHaystack
from evalkit.tasks.sources import NOISE_SENTENCES, DocumentsHaystack, check_fills

KINDS = ["passkey_word", "passkey_uuid", "kv_retrieval", "multikey", "multivalue", "multiquery", "doc_qa",
         "low_overlap"]
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.mark.parametrize("name", KINDS)
def test_every_kind_is_deterministic_by_seed(name):
    task = load_task(name)
    first = [instantiate_needle(task, seed) for seed in range(20)]
    assert first == [instantiate_needle(task, seed) for seed in range(20)]
    assert len({n.needle for n in first}) >= 10  # seeds draw different needles
    for needle in first:
        assert needle.value in needle.needle and needle.answer


def test_kv_retrieval_asks_one_uuid_key_and_fills_with_uuid_pairs():
    task = load_task("kv_retrieval")
    needle = instantiate_needle(task, 3)
    key, value = re.fullmatch(rf'"({UUID})": "({UUID})",', needle.needle).groups()
    assert key in needle.question and value not in needle.question and needle.answer == value
    pairs = list(itertools.islice(haystack_for_task(task).sentences(3), 50))
    assert all(re.fullmatch(rf'"{UUID}": "{UUID}",', p) for p in pairs) and len(set(pairs)) == 50


@pytest.mark.parametrize("name", ["multikey", "multivalue", "multiquery"])
def test_multi_needle_kinds_place_every_needle_and_record_recall(smollm2_tokenizer, name):
    task = load_task(name)
    needle = instantiate_needle(task, 5)
    keys = needle.facts["keys"]
    assert len(needle.extra_needles) == len(needle.extra_depths) == 3 and len(needle.needle_values) == 4
    assert all(0.0 <= d <= 1.0 for d in needle.extra_depths)
    if name == "multikey":
        assert needle.required_values == () and len(set(keys)) == 4 and keys[0] in needle.question
        assert not any(k in needle.question for k in keys[1:])
    elif name == "multivalue":
        assert set(keys) == {keys[0]} and needle.required_values == needle.needle_values
    else:
        assert all(k in needle.question for k in keys) and needle.required_values == needle.needle_values
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=[name], context_lengths=[400], depths=[0.5], samples=1,
                                         output_dir="o", controls=["closed_book"]))
    trials = expand(cfg, {name: task})
    prepared = PreparedTask(task, haystack_for_task(task))
    builder = PromptBuilder(smollm2_tokenizer)
    built = build_trial_prompt(builder, prepared, trials[0], cfg.models[0], cfg)
    ids = built.prompt.input_ids
    assert built.prompt.prompt_tokens == 400
    for span, text in zip(built.prompt.extra_needle_spans, built.needle.extra_needles):
        assert smollm2_tokenizer.decode(ids[span.token_start : span.token_end]).strip() == text
    closed = build_trial_prompt(builder, prepared, trials[1], cfg.models[0], cfg)
    assert not any(v in smollm2_tokenizer.decode(closed.prompt.input_ids) for v in built.needle.needle_values)
    # partial credit: half the required values found
    values = built.needle.needle_values
    score, extra = score_trial(f"{values[0]} and {values[1]}", built)
    found = [n["found"] for n in extra["needles"]]
    assert found == [True, True, False, False]
    if name == "multikey":
        assert score.correct and "recall" not in extra and [n["required"] for n in extra["needles"]] == [True] + [False] * 3
    else:
        assert not score.correct and extra["recall"] == 0.5
        assert score_trial(", ".join(values), built)[0].correct


def test_values_found_matches_whole_tokens():
    assert values_found("The numbers are 1234567, and 7654321.", ["1234567", "7654321", "123"]) == (True, True, False)
    with pytest.raises(ValueError, match="empty after normalisation"):
        values_found("x", ["..."])


def test_doc_qa_gold_entity_never_names_a_distractor_and_similarity_is_a_knob():
    task = load_task("doc_qa")
    for seed in range(30):
        needle = instantiate_needle(task, seed)
        titles = {re.match(r"Document \(Title: (\w+)\)", d).group(1)
                  for d in itertools.islice(haystack_for_task(task).sentences(seed), 200)}
        assert needle.facts["entity"] not in titles and needle.answer in needle.needle
    for similarity in (0.0, 0.5, 1.0):
        docs = list(itertools.islice(DocumentsHaystack(similarity).sentences(1), 400))
        share = sum("founded by" in d for d in docs) / len(docs)
        assert abs(share - similarity) < 0.08


def test_low_overlap_question_shares_no_content_word_with_the_needle():
    task = load_task("low_overlap")
    needles = [instantiate_needle(task, seed) for seed in range(40)]
    assert all(n.facts["lexical_overlap"] == 0.0 and n.facts["city"] in n.question for n in needles)
    assert all(n.facts["landmark"] in n.needle and n.facts["city"] not in n.needle for n in needles)
    assert lexical_overlap("Which character has been to Dresden?", "Yuki has been to Dresden.") == 1.0
    prose = " ".join(itertools.islice(generate_sentences(0), 3000))
    words = set(re.findall(r"[A-Za-z]+", prose))
    assert not words & set(CHARACTERS)
    assert not any(city in prose or landmark in prose for landmark, city in LANDMARKS)


def test_a_task_needs_a_needle_or_a_generator(tmp_path):
    (tmp_path / "t.yaml").write_text("name: t\nquestion: What?\n")
    with pytest.raises(TaskError, match=r"t.yaml: .*add `needle:` \(or a `generator:` block\)"):
        load_task(tmp_path / "t.yaml")


def test_noise_haystack_is_rulers_five_sentences():
    task = load_task("multikey")
    assert list(itertools.islice(haystack_for_task(task).sentences(9), 10)) == list(NOISE_SENTENCES) * 2


def test_folders_are_read_and_small_haystacks_are_refused(tmp_path, smollm2_tokenizer):
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("It rained. The roads were wet.")
    (tmp_path / "docs" / "sub" / "b.md").write_text("Nobody went out. The shops stayed shut.")
    (tmp_path / "docs" / "skip.bin").write_text("Not text. Ignored.")
    source = FileHaystack(tmp_path / "docs")
    assert len(source.files) == 2
    count = lambda text: len(PromptBuilder(smollm2_tokenizer).fragment_ids(text))  # noqa: E731
    tokens = check_fills(source, count, 5, "t")
    assert tokens == sum(count(s) for s in ["It rained.", "The roads were wet.", "Nobody went out.", "The shops stayed shut."])
    with pytest.raises(HaystackError, match=rf"t: the haystack holds {tokens} tokens but the longest context needs 500"):
        check_fills(source, count, 500, "t")
    assert check_fills(DocumentsHaystack(0.5), count, 10**9, "t") is None  # endless sources fill anything
    (tmp_path / "empty").mkdir()
    with pytest.raises(HaystackError, match="folder holds no .txt or .md file"):
        FileHaystack(tmp_path / "empty")


def test_dataset_haystack_reads_a_dataset_saved_to_disk(tmp_path, smollm2_tokenizer):
    datasets = pytest.importorskip("datasets")
    data = datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"text": ["The mill stood by the river. It ground wheat.", "Snow fell early that year."], "id": [1, 2]})})
    data.save_to_disk(str(tmp_path / "ds"))
    source = DatasetHaystack(tmp_path / "ds", "text", "train")
    stream = list(itertools.islice(source.sentences(0), 6))
    assert sorted(set(stream)) == sorted(["The mill stood by the river.", "It ground wheat.", "Snow fell early that year."])
    assert stream == list(itertools.islice(source.sentences(0), 6))
    with pytest.raises(HaystackError, match="split 'test' not found; set haystack.split to one of train"):
        DatasetHaystack(tmp_path / "ds", "text", "test")
    with pytest.raises(HaystackError, match="no column 'body'; set haystack.column to one of text, id"):
        DatasetHaystack(tmp_path / "ds", "body", "train")
    with pytest.raises(HaystackError, match="no such folder"):
        DatasetHaystack(tmp_path / "missing", "text", None)


def test_doc_qa_records_the_gold_documents_index(smollm2_tokenizer):
    task = load_task("doc_qa")
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=["doc_qa"], context_lengths=[600], depths=[0.0, 0.5, 1.0],
                                         samples=1, output_dir="o", length_tolerance_tokens=60))
    builder, prepared = PromptBuilder(smollm2_tokenizer), PreparedTask(task, haystack_for_task(task))
    built = [build_trial_prompt(builder, prepared, t, cfg.models[0], cfg) for t in expand(cfg, {"doc_qa": task})]
    index, total = [b.gold_document_index for b in built], [b.documents_total for b in built]
    assert index[0] == 0 and index[2] == total[2] - 1
    assert 0 < index[1] < total[1] - 1 and total[1] >= 10

"""Documents sources (evalkit/tasks/documents.py) on rows cut from Liu et al.'s files (tests/tasks/data/, MIT)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from evalkit.errors import TaskError
from evalkit.scoring import subspan_normalize
from evalkit.tasks.document_spec import DocumentsSpec
from evalkit.tasks.documents import Document, DocumentCorpus

DATA = Path(__file__).parent / "data" / "lost_in_the_middle"
NQ = "nq-open-oracle-40.jsonl"
KV = "kv-retrieval-75_keys-3.jsonl.gz"


def corpus(source: dict, total: int = 5, base: Path = DATA, metric: str = "contains", **options) -> DocumentCorpus:
    return DocumentCorpus(DocumentsSpec.model_validate({"source": source, "total": total, **options}), base, metric)


def nq_rows() -> list[dict]:
    return [json.loads(line) for line in (DATA / NQ).read_text().splitlines()]


def test_retrieved_distractors_hold_no_alias_and_are_ranked_by_bm25():
    docs = corpus({"format": "liu_qa", "path": NQ}, total=6)
    rows = nq_rows()
    assert len(docs) == 40 and "BM25" in docs.policy and "alias" in docs.policy
    for index in range(len(docs)):
        example = docs.example(index)
        assert example.question == rows[index]["question"] and example.answers == tuple(rows[index]["answers"])
        gold = rows[index]["ctxs"][0]
        assert example.gold == Document(gold["title"], gold["text"])
        assert len(example.distractors) == 5 and example.gold not in example.distractors
        assert len(set(example.distractors)) == 5
        for doc in example.distractors:  # no distractor can answer: none contains a normalised alias
            text = subspan_normalize(f"{doc.title} {doc.text}")
            assert not any(subspan_normalize(alias) in text for alias in example.answers)


def test_the_top_distractor_shares_words_with_the_question():
    import bm25s

    docs = corpus({"format": "liu_qa", "path": NQ}, total=2)
    example = docs.example(0)
    question_words = set(bm25s.tokenize([example.question], stopwords="en", return_ids=False,
                                        show_progress=False)[0])
    top = docs.example(0).distractors[0]
    top_words = set(bm25s.tokenize([f"{top.title} {top.text}"], stopwords="en", return_ids=False,
                                   show_progress=False)[0])
    assert question_words & top_words


def test_samples_are_distinct_questions_and_stable_per_seed():
    docs = corpus({"format": "liu_qa", "path": NQ}, keep_self_answering=True)
    picks = [docs.example_index(s, seed=0) for s in range(40)]
    assert sorted(picks) == list(range(40))
    assert picks == [docs.example_index(s, seed=0) for s in range(40)]
    assert picks != [docs.example_index(s, seed=1) for s in range(40)]
    with pytest.raises(TaskError, match="samples <= 40"):
        docs.example_index(40, seed=0)


# rows 11 and 14 of the fixture: "where is the tv show the curse of oak island filmed" -> "Oak Island" and "what is the
# main mineral in lithium batteries" -> "Lithium": an echo of the question scores right in every arm
SELF_ANSWERING = {10, 13}


@pytest.mark.parametrize("metric", ["contains", "liu", "subspan_em", "best_subspan_em"])
def test_questions_containing_their_answer_are_flagged_and_left_out(metric):
    docs = corpus({"format": "liu_qa", "path": NQ}, metric=metric)
    assert docs.self_answering == SELF_ANSWERING and docs.self_answering_left_out == 2
    picks = [docs.example_index(s, seed=0) for s in range(38)]
    assert sorted(picks) == sorted(set(range(40)) - SELF_ANSWERING)
    with pytest.raises(TaskError, match=r"the 38 rows of the file \(2 questions containing their own answer are "
                                        r"left out\); use samples <= 38"):
        docs.example_index(38, seed=0)
    # kept on request, and flagged
    kept = corpus({"format": "liu_qa", "path": NQ}, metric=metric, keep_self_answering=True)
    assert kept.self_answering_left_out == 0
    assert [i for i in range(40) if kept.example(i).self_answering] == sorted(SELF_ANSWERING)
    # their passages stay distractors of other questions (the pool is the same)
    assert docs.example(0).distractors == kept.example(0).distractors


def test_leaving_questions_out_keeps_the_order_of_a_file_that_has_none(tmp_path):
    rows = [row for i, row in enumerate(nq_rows()) if i not in SELF_ANSWERING]
    (tmp_path / "clean.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    docs = corpus({"format": "liu_qa", "path": "clean.jsonl"}, base=tmp_path)
    kept = corpus({"format": "liu_qa", "path": "clean.jsonl"}, base=tmp_path, keep_self_answering=True)
    assert docs.self_answering_left_out == 0
    assert [docs.example_index(s, 0) for s in range(38)] == [kept.example_index(s, 0) for s in range(38)]


def test_file_distractors_keep_the_rows_own_order(tmp_path):
    row = nq_rows()[0]
    ctxs = [dict(row["ctxs"][0], isgold=True)] + [
        {"title": f"T{i}", "text": f"Passage number {i}.", "isgold": False, "hasanswer": False} for i in range(4)]
    (tmp_path / "multi.jsonl.gz").write_bytes(gzip.compress(json.dumps({**row, "ctxs": ctxs}).encode()))
    docs = corpus({"format": "liu_qa", "path": "multi.jsonl.gz", "distractors": "file"}, total=4, base=tmp_path)
    assert [d.title for d in docs.example(0).distractors] == ["T0", "T1", "T2"]
    assert docs.policy.startswith("file:")
    with pytest.raises(TaskError, match="lower documents.total"):
        corpus({"format": "liu_qa", "path": "multi.jsonl.gz", "distractors": "file"}, total=6,
               base=tmp_path).example(0)


def test_key_value_rows_move_the_gold_pair_out_of_the_distractors():
    docs = corpus({"format": "liu_kv", "path": KV}, total=75)
    row = json.loads(gzip.open(DATA / KV, "rt").readline())
    example = docs.example(0)
    assert example.question == row["key"] and example.answers == (row["value"],)
    assert example.gold == Document(row["key"], row["value"])
    others = [Document(k, v) for k, v in row["ordered_kv_records"] if k != row["key"]]
    assert list(example.distractors) == others[:74]


def test_a_user_corpus_with_questions_by_index_or_id(tmp_path):
    (tmp_path / "docs.jsonl").write_text("\n".join(json.dumps(d) for d in [
        {"id": "a", "title": "Harbour", "text": "The harbour master is Ada Byron."},
        {"id": "b", "title": "Bakery", "text": "The bakery opens at six."},
        {"id": "c", "title": "Harbour boats", "text": "Boats in the harbour are blue."},
        {"id": "d", "title": "School", "text": "The school has ten rooms."}]) + "\n")
    (tmp_path / "q.jsonl").write_text(
        json.dumps({"question": "Who is the harbour master?", "answers": ["Ada Byron", "Byron"], "gold": "a"}) + "\n"
        + json.dumps({"question": "When does the bakery open?", "answers": ["six"], "gold": 1}) + "\n")
    docs = corpus({"format": "jsonl", "documents": "docs.jsonl", "questions": "q.jsonl"}, total=3, base=tmp_path)
    first = docs.example(0)
    assert first.gold.title == "Harbour" and first.answers == ("Ada Byron", "Byron")
    assert first.distractors[0].title == "Harbour boats"  # the most similar document ranks first
    assert docs.example(1).gold.title == "Bakery"


def _kv_row(records: list) -> str:
    return json.dumps({"ordered_kv_records": records, "key": "k2", "value": "v2"}) + "\n"


@pytest.mark.parametrize("fmt, content, message", [
    ("liu_qa", '{"question": "q", "answers": ["a"], "ctxs": []}\n', "exactly one gold"),
    ("liu_qa", 'not json\n', "not JSON"),
    ("liu_qa", '{"question": "q", "answers": [], "ctxs": [{"text": "t", "isgold": true}]}\n', "'answers' must be"),
    ("liu_qa", '[1, 2]\n', "not an object"),
    ("liu_qa", '{"question": "q", "answers": ["a"], "ctxs": [42, {"text": "t", "isgold": true}]}\n',
     r"ctxs\[0\]: 42 is not a passage object"),
    ("liu_qa", '{"question": "q", "answers": ["a"], "ctxs": [{"text": 7, "isgold": true}]}\n',
     r"ctxs\[0\]: field 'text' is missing or not a non-empty string"),
    ("liu_kv", _kv_row([["k1", "v1", "x"], ["k2", "v2"]]), r"ordered_kv_records\[0\]: .* not a \[key, value\] pair"),
    ("liu_kv", _kv_row([42, ["k2", "v2"]]), r"ordered_kv_records\[0\]: 42 is not a \[key, value\] pair"),
    ("liu_kv", _kv_row([["k1"], ["k2", "v2"]]), r"ordered_kv_records\[0\]: .* not a \[key, value\] pair"),
    ("liu_kv", _kv_row([["k2", {"v": 2}]]), r"ordered_kv_records\[0\]: .* two strings"),
], ids=["qa no gold", "qa not json", "qa no answers", "qa row array", "qa ctx number", "qa ctx text number",
        "kv triple", "kv number", "kv single", "kv value object"])
def test_malformed_rows_name_the_file_and_line(tmp_path, fmt, content, message):
    (tmp_path / "bad.jsonl").write_text(content)
    with pytest.raises(TaskError, match=message) as info:
        corpus({"format": fmt, "path": "bad.jsonl"}, base=tmp_path)
    assert f"{tmp_path / 'bad.jsonl'}:1" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("fmt, name", [("liu_kv", KV), ("liu_qa", NQ)])
def test_a_corrupt_gzip_names_the_file_and_line(tmp_path, fmt, name):
    data = bytearray(gzip.compress((DATA / name).read_bytes()) if fmt == "liu_qa" else (DATA / name).read_bytes())
    data[40:60] = bytes(20)  # still a gzip header, but the deflate stream is broken
    (tmp_path / "bad.jsonl.gz").write_bytes(bytes(data))
    with pytest.raises(TaskError, match="unreadable.*re-download") as info:
        corpus({"format": fmt, "path": "bad.jsonl.gz"}, base=tmp_path)
    assert f"{tmp_path / 'bad.jsonl.gz'}:1: " in str(info.value) and "\n" not in str(info.value)


def test_a_fifo_or_folder_source_is_named_for_what_it_is(tmp_path):
    os.mkfifo(tmp_path / "pipe.jsonl")  # reading it would block forever
    (tmp_path / "folder.jsonl").mkdir()
    with pytest.raises(TaskError, match=r"pipe.jsonl: is a named pipe \(FIFO\), not a regular file; documents.source"):
        corpus({"format": "liu_qa", "path": "pipe.jsonl"}, base=tmp_path)
    with pytest.raises(TaskError, match=r"folder.jsonl: is a folder, not a file; documents.source"):
        corpus({"format": "liu_kv", "path": "folder.jsonl"}, base=tmp_path)


def test_a_missing_file_says_how_to_point_at_it(tmp_path):
    with pytest.raises(TaskError, match="file not found.*data_dir"):
        corpus({"format": "liu_qa", "path": "nowhere.jsonl.gz"}, base=tmp_path)

"""The run-directory format: record lines (schema 1 upgrade, type checks), the header, corrupted files.

Resume (``RunStore.open``) and reports (``load_results``) read through one parser, so every bad line is
the same one-line RunDirError naming file and line for both (issue 18 D5, D9).
"""

from __future__ import annotations

import json
import math

import pytest

from report_fixtures import make_record, write_header, write_records
from evalkit.errors import RunDirError
from evalkit.report.data.load import load_results
from evalkit.store import format as fmt
from evalkit.store.run_store import RunStore
from evalkit.types import TrialRecord

V1_EXTRA = {
    "control": "closed_book", "layout": "question before, xml markers", "gold_index": 3, "documents": 12,
    "layout_axes": {"answer_prefix": False, "chat_template": True, "context_markers": "xml",
                    "instruction_position": "after", "question_position": "before", "system_prompt": None},
    "recall": 0.5, "entity": "Ada",
}


def _v1_record(**overrides) -> dict:
    """A record as evalkit wrote it before schema 2: no version, the grid axes in ``extra``."""
    row = make_record(**overrides)
    for name in ("schema_version", "control", "question_position", "instruction_position", "chat_template",
                 "system_prompt", "context_markers", "answer_prefix", "gold_document_index", "documents_total"):
        row.pop(name)
    return row


def test_schema1_record_is_upgraded_into_typed_fields():
    record = fmt.parse_record(_v1_record(extra=V1_EXTRA))
    assert record.schema_version == fmt.SCHEMA_VERSION == 2
    assert record.control == "closed_book"
    assert (record.question_position, record.instruction_position, record.context_markers) == ("before", "after", "xml")
    assert (record.chat_template, record.system_prompt, record.answer_prefix) == (True, None, False)
    assert (record.gold_document_index, record.documents_total) == (3, 12)
    assert record.extra == {"recall": 0.5, "entity": "Ada"}  # only the kind-specific contents stay in extra
    plain = fmt.parse_record(_v1_record())  # a schema-1 placement trial of the default layout
    assert (plain.control, plain.question_position, plain.gold_document_index, plain.extra) == ("", "after", None, {})


def test_record_line_round_trips_and_carries_the_schema_version():
    record = TrialRecord(**{**make_record(control="oracle", depth=math.nan, context_markers="xml"), "extra": {"x": 1}})
    row = json.loads(json.dumps(fmt.record_row(record)))
    assert row["schema_version"] == 2 and row["control"] == "oracle" and "control" not in row["extra"]
    again = fmt.parse_record(row)
    assert math.isnan(again.depth) and again.context_markers == "xml" and again.extra == {"x": 1}


def test_records_written_before_context_fraction_load_with_none_and_window_records_keep_it(tmp_path):
    old = make_record(trial_id="old")
    old.pop("context_fraction")  # a record line from before context_unit: window existed
    assert fmt.parse_record(old).context_fraction is None
    write_header(tmp_path)
    write_records(tmp_path, [old, make_record(trial_id="new", context_fraction=0.5)])
    frame = load_results(tmp_path).set_index("trial_id")
    assert math.isnan(frame.loc["old", "context_fraction"]) and frame.loc["new", "context_fraction"] == 0.5
    with pytest.raises(ValueError, match="record field context_fraction: 'half' is not a float or null"):
        fmt.parse_record(make_record(context_fraction="half"))


def test_header_carries_the_schema_version(tmp_path):
    fmt.write_header(tmp_path, {"config_hash": "abc"})
    header = fmt.read_header(tmp_path)
    assert header["schema_version"] == 2 and fmt.header_schema(header) == 2
    assert fmt.header_schema({"config_hash": "abc"}) == 1  # written before versions existed


@pytest.mark.parametrize("text", ["null", "[1, 2]", '"x"', "0"])
def test_a_header_that_is_not_an_object_is_one_error_for_resume_and_report(tmp_path, text):
    run = tmp_path / "run"
    write_records(run, [make_record()])
    (run / "header.json").write_text(text + "\n")
    with pytest.raises(RunDirError, match=r"header\.json: expected a JSON object"):
        load_results(run)
    with RunStore(run) as store, pytest.raises(RunDirError, match=r"header\.json: expected a JSON object"):
        store.open({"config_hash": "cafe1234", "models": {}})
    assert not store.lock.held


BAD_LINES = [
    (b"0", r"a JSON int, not an object"), (b"null", r"a JSON NoneType"), (b'"x"', r"a JSON str"),
    (b"[1, 2]", r"a JSON list"), (b"\xff\xfe", r"not UTF-8"), (b"{not json", r"not JSON"),
]


@pytest.mark.parametrize(("raw", "what"), BAD_LINES)
def test_a_corrupted_middle_line_is_the_same_error_for_resume_and_report(tmp_path, raw, what):
    run = tmp_path / "run"
    write_header(run)
    good = [json.dumps(make_record(trial_id=t)).encode() for t in ("a", "b")]
    (run / "trials.jsonl").write_bytes(good[0] + b"\n" + raw + b"\n" + good[1] + b"\n")
    with pytest.raises(RunDirError, match=rf"trials\.jsonl:2: not a trial record \({what}"):
        load_results(run)
    with RunStore(run) as store, pytest.raises(RunDirError, match=rf"trials\.jsonl:2: .*{what}.*delete or repair"):
        store.open({"config_hash": "cafe1234", "models": {"org/tiny-model": "abc123"}})
    assert not store.lock.held


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("context_length", "abc", "int"), ("depth", None, "float"), ("trial_id", ["x"], "str"),
    ("correct", "maybe", "bool"), ("correct", 1, "bool"), ("sample", True, "int"), ("regions", [], "dict"),
    ("control", None, "str"), ("chat_template", "yes", "bool or null"), ("gold_document_index", 1.5, "int or null"),
])
def test_a_field_of_the_wrong_type_names_file_line_and_field(tmp_path, field, value, expected):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [make_record(trial_id="a"), {**make_record(trial_id="b"), field: value}])
    message = rf"trials\.jsonl:2: record field {field}: .* is not a {expected}"
    with pytest.raises(RunDirError, match=message):
        load_results(run)
    with RunStore(run) as store, pytest.raises(RunDirError, match=message):
        store.open({"config_hash": "cafe1234", "models": {"org/tiny-model": "abc123"}})


def test_a_wrong_type_in_a_schema1_extra_axis_is_refused():
    with pytest.raises(ValueError, match="record field control: 3 is not a str"):
        fmt.parse_record(_v1_record(extra={"control": 3}))


def test_a_newer_schema_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="schema_version 3 is not one this evalkit reads.*upgrade evalkit"):
        fmt.parse_record({**make_record(), "schema_version": 3})


def _npz(tmp_path, name: str, **arrays) -> bytes:
    import numpy as np

    np.savez(tmp_path / name, **arrays)
    return (tmp_path / name).read_bytes()


@pytest.mark.parametrize("content, reason", [
    (lambda t: bytes(range(256)) * 2, "not an evalkit attention array (not an .npz archive"),  # numpy: "pickled"
    (lambda t: b"", "not an evalkit attention array (not an .npz archive"),
    (lambda t: _npz(t, "m.npz", mass=[0.5])[:100], "corrupt evalkit attention array (File is not a zip file)"),
    (lambda t: _npz(t, "o.npz", mass=__import__("numpy").array([{}], dtype=object)),
     "corrupt evalkit attention array (an entry holds Python objects)"),
    (lambda t: _npz(t, "k.npz", mass=[0.5]), "corrupt evalkit attention array ('remainder is not a file"),
], ids=["garbage", "empty", "cut zip", "object array", "missing array"])
def test_a_corrupt_attention_array_says_so_without_numpys_advice(tmp_path, content, reason):
    path = tmp_path / "trial.npz"
    path.write_bytes(content(tmp_path))
    with pytest.raises(RunDirError) as info:
        fmt.read_trial_attention(path)
    message = str(info.value)
    assert message.startswith(f"{path}: {reason}") and message.endswith("rerun that trial (delete its record)")
    assert "allow_pickle" not in message and "\n" not in message


def test_a_torn_last_line_is_left_out_and_named(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_bytes(json.dumps(make_record()).encode() + b'\n{"trial_id": "t1", "sta')
    read = fmt.read_records(path)
    assert [r.trial_id for _, r in read.records] == ["t0"] and read.torn.endswith("trials.jsonl:2: torn last line (partial write)")


def test_file_names_per_process_and_read_order(tmp_path):
    assert (fmt.records_name(), fmt.records_name(3), fmt.lock_name(3), fmt.prompts_name(3)) == (
        "trials.jsonl", "trials.3.jsonl", "run.3.lock", "prompts.3.jsonl")
    for name in ("trials.10.jsonl", "trials.2.jsonl", "trials.jsonl", "trials.x.jsonl"):
        (tmp_path / name).write_text("")
    assert [p.name for p in fmt.records_files(tmp_path)] == ["trials.jsonl", "trials.2.jsonl", "trials.10.jsonl",
                                                              "trials.x.jsonl"]


def test_every_layout_axis_is_a_typed_record_column():
    """A new layout axis must become a TrialRecord field too (``record_axes`` fills them from the Layout)."""
    import dataclasses

    from evalkit.config.layouts import Layout
    from evalkit.types import TrialRecord

    record_fields = {f.name: f.default for f in dataclasses.fields(TrialRecord)}
    for axis in dataclasses.fields(Layout):
        assert record_fields.get(axis.name, "missing") == axis.default, axis.name

"""evalkit export: each format written from a hand-built run and read back with its own library."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import grid_records, make_record, write_header, write_records

from evalkit.errors import ExportError
from evalkit.export import export_run, trial_table
from evalkit.export.card import LIU, NEEDLE, RETRIEVAL_HEADS, RULER, citations, dataset_card
from evalkit.export.exporter import check_format, check_libraries
from evalkit.store.format import save_trial_attention
from evalkit.types import TrialAttention

REPO = Path(__file__).resolve().parent.parent
MODEL_B = "org/other-model"
# records beyond the plain grid: a shuffled layout with two look-alikes, a recall score, a cut-off answer, a skip
LOOK_ALIKES = [{"text": "The pass key is 54321.", "value": "54321", "key": "", "kind": "variant", "token_start": 100,
                "token_end": 110, "requested_depth": 0.2, "achieved_depth": 0.2}] * 2


def _special_records() -> list[dict]:
    return [
        make_record(trial_id="attended"),
        make_record(trial_id="shuffled", depth=0.25, achieved_depth=0.26, haystack_order="shuffled",
                    distractor_count=2, distractors=LOOK_ALIKES, correct=False, generated="54321",
                    failure="distractor", failure_distractor=1, chat_template=False, mitigation="attention_sort"),
        make_record(trial_id="recall", extra={"recall": 0.5, "truncated": True}, generated="12345 and",
                    correct=False, failure="partial"),
        # a closed-book control has no needle position: its depth is NaN in the record, null in an export
        make_record(trial_id="closed", control="closed_book", depth=float("nan"), achieved_depth=None, correct=False,
                    generated="I don't know", failure="absent"),
        make_record(trial_id="skipped", status="skipped", skip_reason="out of memory", achieved_depth=None,
                    gold_logprob_sum=None, gold_logprob_mean=None, generated=""),
    ]


@pytest.fixture()
def run_dir(tmp_path) -> Path:
    """Two models' grids (60 trials each), the special records, attention arrays for three of them."""
    run = tmp_path / "run"
    write_header(run, models={"org/tiny-model": "abc123", MODEL_B: "def456"},
                 config={"models": ["org/tiny-model", MODEL_B], "tasks": ["passkey"], "attention": {"capture": True},
                         "mitigations": [{"arm": "none"}, {"arm": "attention_sort"}]})
    records = grid_records() + grid_records(model=MODEL_B) + _special_records()
    write_records(run, records)
    for trial_id, needle_mass in (("attended", 0.2), ("shuffled", 0.05)):
        save_trial_attention(run, trial_id, _arrays(needle_mass))
    save_trial_attention(run, "closed", _arrays(0.0, needle_end=500))  # no needle: an empty region
    return run


FINISHED = 2 * 60 + 4  # the skipped trial is left out


def _arrays(needle_mass: float, needle_end: int = 510) -> TrialAttention:
    """Row 0 puts ``needle_mass`` on the needle (tokens 500-510 of 1024) in every layer and head."""
    names = ("preamble", "context_before", "needle", "context_after", "question")
    mass = np.full((2, 3, 1, len(names)), (1 - needle_mass) / 4, dtype=np.float32)
    mass[..., 2] = needle_mass
    spans = np.array([(0, 10), (10, 500), (500, needle_end), (needle_end, 1000), (1000, 1024)])
    return TrialAttention(mass=mass, remainder=np.zeros((2, 3, 1), np.float32),
                          argmax_position=np.zeros((2, 3, 1), np.int32), argmax_token=np.zeros((2, 3, 1), np.int32),
                          row_token=np.array([7]), row_in_needle=np.array([True]), region_names=names, spans=spans,
                          bins=0, prompt_tokens=1024)


def rows_of(table) -> dict[str, dict]:
    return {r["trial_id"]: r for r in table.rows()}


def test_trial_table_types_every_axis_and_adds_score_truncation_and_attention(run_dir):
    table = trial_table(run_dir)
    assert table.trials == FINISHED and table.skipped == 1
    kinds = {c.name: c.kind for c in table.columns}
    assert (kinds["context_length"], kinds["depth"], kinds["correct"], kinds["model"]) == ("int", "float", "bool", "str")
    assert kinds["regions_json"] == kinds["distractors_json"] == kinds["extra_json"] == "json"
    assert "status" not in kinds and "regions" not in kinds
    assert rows_of(table)["closed"]["depth"] is None and rows_of(table)["closed"]["control"] == "closed_book"
    rows = rows_of(table)
    assert rows["shuffled"]["distractors_placed"] == 2 and rows["shuffled"]["haystack_order"] == "shuffled"
    assert rows["shuffled"]["chat_template"] is False and rows["recall"]["chat_template"] is None
    assert rows["recall"]["score"] == 0.5 and rows["recall"]["truncated"] is True
    assert rows["shuffled"]["score"] == 0.0 and rows["shuffled"]["truncated"] is False
    # 0.2 of the attention on 10 of 1024 tokens: 0.2 / (10 / 1024) times a uniform spread
    assert rows["attended"]["needle_mass"] == pytest.approx(0.2)
    assert rows["attended"]["needle_mass_vs_uniform"] == pytest.approx(20.48)
    assert rows["shuffled"]["needle_mass"] == pytest.approx(0.05)
    assert rows["recall"]["needle_mass"] is None  # no array
    assert rows["closed"]["needle_mass"] is None  # an array, but no needle to attend to
    assert json.loads(rows["shuffled"]["distractors_json"])[0]["value"] == "54321"


def test_the_window_fraction_is_a_described_float_column(run_dir, tmp_path):
    column = trial_table(run_dir).column("context_fraction")
    assert (column.kind, column.nullable, set(column.values)) == ("float", True, {None})  # a token run
    assert "fraction of the model's window" in column.description
    window_run = tmp_path / "window"
    write_header(window_run)
    write_records(window_run, [make_record(trial_id="a", context_fraction=0.25),
                               make_record(trial_id="b", context_length=2048, context_fraction=0.5)])
    assert rows_of(trial_table(window_run))["b"]["context_fraction"] == 0.5


def test_parquet_reads_back_typed_with_the_header(run_dir):
    pq = pytest.importorskip("pyarrow.parquet")
    result = export_run(run_dir, "parquet")
    assert result.out == run_dir / "export" / "trials.parquet" and result.trials == FINISHED
    table = pq.read_table(result.out)
    assert table.num_rows == FINISHED
    types = {f.name: str(f.type) for f in table.schema}
    assert (types["context_length"], types["depth"], types["correct"], types["distractor_count"]) == (
        "int64", "double", "bool", "int64")
    assert not table.schema.field("context_length").nullable and table.schema.field("needle_mass").nullable
    frame = table.to_pandas()
    assert set(frame["model"]) == {"org/tiny-model", MODEL_B} and "skipped" not in set(frame["trial_id"])
    assert frame.loc[frame["trial_id"] == "shuffled", "distractor_count"].item() == 2
    assert frame["distractor_count"].isna().sum() == FINISHED - 1  # null, not 0, where the task's count applied
    assert table.column("depth").null_count == 1 and frame.loc[frame["depth"].isna(), "trial_id"].tolist() == ["closed"]
    header = json.loads(table.schema.metadata[b"evalkit.header"])
    assert header["models"][MODEL_B] == "def456"


def test_hf_dataset_loads_with_datasets_and_its_card_cites_the_methods(run_dir, tmp_path):
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "dataset"
    result = export_run(run_dir, "hf-dataset", out)
    assert {p.relative_to(out).as_posix() for p in result.files} == {"README.md", "data/train-00000-of-00001.parquet"}
    dataset = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert dataset.num_rows == FINISHED
    assert dataset.features["context_length"].dtype == "int64" and dataset.features["correct"].dtype == "bool"
    assert dataset.features["depth"].dtype == "float64"
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "def456" in card and "cafe1234" in card and "evalkit_version: `0.1.0`" in card
    assert "Lost in the Middle" in card and "Retrieval Head" in card and "Attention Sorting" in card
    assert "RULER" in card  # look-alikes were placed


def _table_of(run: Path, records: list[dict], config: dict | None = None):
    tasks = sorted({r["task"] for r in records})
    write_header(run, config={"models": ["org/tiny-model"], "tasks": tasks, **(config or {})})
    write_records(run, records)
    return trial_table(run)


def test_citations_follow_the_run(tmp_path):
    plain = _table_of(tmp_path / "plain", [make_record(trial_id="a")])
    assert citations(plain) == [NEEDLE]  # one depth, no documents, no look-alikes, no capture
    sweep = _table_of(tmp_path / "sweep", [make_record(trial_id="a", depth=0.0),
                                           make_record(trial_id="b", depth=1.0, task="multikey")],
                      config={"attention": {"capture": True}})
    assert citations(sweep) == [NEEDLE, LIU, RULER, RETRIEVAL_HEADS]
    assert "```bibtex" in dataset_card(sweep, "title")


def test_inspect_logs_read_back_per_model_with_scores(run_dir, tmp_path):
    pytest.importorskip("inspect_ai")
    from inspect_ai.log import read_eval_log

    result = export_run(run_dir, "inspect", tmp_path / "logs")
    assert sorted(p.name for p in result.files) == ["passkey_org-other-model.eval", "passkey_org-tiny-model.eval"]
    logs = {log.eval.model: log for log in (read_eval_log(str(p)) for p in result.files)}
    tiny = logs["org/tiny-model"]
    assert tiny.status == "success" and len(tiny.samples) == 64  # 60 grid trials and the four finished special ones
    assert len(logs[MODEL_B].samples) == 60
    # the grid has 52 of 60 right, "attended" is right, "shuffled", "recall" and "closed" are wrong: 53 of 64
    metrics = tiny.results.scores[0].metrics
    assert metrics["accuracy"].value == pytest.approx(53 / 64)
    assert metrics["stderr"].value == pytest.approx(math.sqrt(53 / 64 * 11 / 64 / 63))
    samples = {s.id: s for s in tiny.samples}
    assert samples["shuffled"].scores["evalkit"].value == "I" and samples["shuffled"].metadata["distractors_placed"] == 2
    assert samples["recall"].output.choices[0].stop_reason == "max_tokens"
    assert sum(s.scores["evalkit"].value == "C" for s in tiny.samples) == 53
    assert tiny.eval.metadata["model_revision"] == "abc123" and samples["shuffled"].target == "12345"


def test_export_run_is_public_api():
    import evalkit

    assert evalkit.export_run is export_run and issubclass(evalkit.ExportError, evalkit.EvalkitError)


def test_a_missing_library_or_format_is_one_line(monkeypatch):
    with pytest.raises(ExportError, match="not one of parquet, hf-dataset, inspect"):
        check_format("csv")
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    with pytest.raises(ExportError, match=r'needs inspect_ai, which is not installed; pip install "evalkit\[export\]"'):
        check_libraries("inspect")


def test_cli_export_errors_are_one_line(tmp_path):
    def evalkit(*args):
        return subprocess.run([sys.executable, "-m", "evalkit", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    missing = evalkit("export", str(tmp_path / "nothing"), "--format", "parquet")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "no such run directory" in missing.stderr
    write_header(tmp_path / "run")
    write_records(tmp_path / "run", [make_record()])
    bad = evalkit("export", str(tmp_path / "run"), "--format", "csv")
    assert bad.returncode == 2 and bad.stderr.strip() == (
        "error: export: --format 'csv' is not one of parquet, hf-dataset, inspect")

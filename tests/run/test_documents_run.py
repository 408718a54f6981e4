"""Documents tasks in runs: typed record columns, attention per document against eager, config checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.config.schema import load_config
from evalkit.report.data.load import load_results
from evalkit.run.runner import run_eval
from evalkit.store.format import attention_path, read_trial_attention
from evalkit.store.saved_prompts import read_saved_prompts
from run_fixtures import records, tiny_config

DATA = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
TASK = "name: docs\ndocuments:\n  source: {format: liu_qa, path: nq-open-oracle-40.jsonl}\n  total: 4\n" \
       "metric: best_subspan_em\n"


def documents_config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    (tmp_path / "tasks").mkdir(exist_ok=True)
    (tmp_path / "tasks" / "docs.yaml").write_text(TASK)
    fields = dict(tasks=["docs"], task_dirs=["tasks"], data_dir=str(DATA), context_lengths=[1024],
                  depths=[0.0, 0.5, 1.0], samples=2, controls=["closed_book", "oracle"])
    fields.update(changes)
    return tiny_config(tmp_path, model_dir, **fields)


def test_records_carry_the_document_axis_as_typed_columns(tmp_path, tiny_model_dir, single_thread, caplog):
    path = documents_config(tmp_path, tiny_model_dir)
    with caplog.at_level("WARNING"):
        summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    rows = records(summary.run_dir)
    assert len(rows) == 2 * (3 + 2)
    # the fixture's two questions that contain their own answer are left out, and the count is stated
    assert "(docs): 2 questions contain their own answer (metric best_subspan_em) and are left out" in caplog.text
    assert all(r["extra"]["self_answering_left_out"] == 2 for r in rows)
    assert {r["context_length"] for r in rows} == {1024}  # controls carry their cell's length (the oracle too)
    placed = [r for r in rows if not r["control"]]
    assert sorted({(r["depth"], r["gold_document_index"]) for r in placed}) == [(0.0, 0), (0.5, 2), (1.0, 3)]
    for record in placed:
        assert record["documents_total"] == 4 and len(record["document_spans"]) == 4
        assert record["document_spans"][record["gold_document_index"]] == record["regions"]["needle"]
        assert record["metric"] == "best_subspan_em" and isinstance(record["best_subspan_em"], bool)
        assert record["extra"]["distractors"].startswith("retrieved: BM25")
    by_control = {r["control"]: r for r in rows if r["control"] and r["sample"] == 0}
    assert by_control["oracle"]["documents_total"] == 1 and by_control["closed_book"]["documents_total"] == 0
    frame = load_results(summary.run_dir)
    # the document axis is a typed integer column (nullable where needle trials or closed-book lack it)
    assert str(frame["gold_document_index"].dtype) == "Int64" and str(frame["documents_total"].dtype) == "int64"
    assert frame["best_subspan_em"].dtype == bool and frame["metric"].eq("best_subspan_em").all()
    assert frame.loc[frame["control"] == "", "gold_document_index"].notna().all()
    # resume: nothing is run twice
    again = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert again.already_done == len(rows) and len(records(summary.run_dir)) == len(rows)


def test_document_attention_sums_to_one_and_equals_eager_over_document_spans(tmp_path, tiny_model_dir,
                                                                             single_thread):
    import torch
    from transformers import AutoModelForCausalLM

    path = documents_config(tmp_path, tiny_model_dir, depths=[0.5], samples=1, controls=[], save_prompts=True,
                            attention={"capture": True, "bins": 3, "sink_tokens": 1, "decode_steps": 0})
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    (record,) = records(summary.run_dir)
    att = read_trial_attention(attention_path(summary.run_dir, record["trial_id"]))
    assert att.documents == 4 and att.region_names[att.document_slice] == ("doc_00", "doc_01", "doc_02", "doc_03")
    documents = att.mass[..., att.document_slice]
    # documents tile the context: with sink, preamble, question, generated and the remainder they sum to 1
    others = sum(att.region(n) for n in ("sink", "preamble", "question", "generated"))
    np.testing.assert_allclose(documents.sum(-1) + others + att.remainder, 1.0, atol=1e-5)
    np.testing.assert_allclose(documents[..., 2], att.region("needle"), atol=1e-6)
    ids = read_saved_prompts(summary.run_dir)[record["trial_id"]]["input_ids"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="eager").eval()
    with torch.no_grad():
        weights = model(torch.tensor([ids]), output_attentions=True).attentions  # per layer [1, heads, L, L]
    for layer, layer_weights in enumerate(weights):
        last_row = layer_weights[0, :, -1, :].numpy()  # [heads, L]: the answer step's row
        expected = np.stack([last_row[:, a:b].sum(-1) for a, b in record["document_spans"]], -1)
        np.testing.assert_allclose(documents[layer, :, 0, :], expected, atol=1e-5)


def test_data_dir_can_be_set_on_the_command_line_and_a_missing_file_writes_nothing(tmp_path, tiny_model_dir,
                                                                                capsys):
    elsewhere = tmp_path / "data"
    elsewhere.mkdir()
    path = documents_config(tmp_path, tiny_model_dir, data_dir=str(elsewhere), samples=1, controls=[])
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "nq-open-oracle-40.jsonl: file not found" in err and "data_dir" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
    shutil.copy(DATA / "nq-open-oracle-40.jsonl", elsewhere)
    assert main(["validate", str(path)]) == 0
    assert main(["validate", str(path), "--set", f"data_dir={tmp_path / 'none'}"]) == 2


@pytest.mark.parametrize("changes, message", [
    ({"controls": ["dummy_needle"]}, "controls: control 'dummy_needle' is not defined for documents tasks"),
    ({"samples": 39}, "samples: sample 38 asks for more questions than the 38 rows of the file (2 questions "
                      "containing their own answer are left out); use samples <= 38"),
    ({"context_lengths": [200]}, "context_lengths: 4 documents make a prompt of"),
])
def test_impossible_documents_grids_are_refused_before_anything_is_written(tmp_path, tiny_model_dir, capsys,
                                                                          changes, message):
    path = documents_config(tmp_path, tiny_model_dir, **changes)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_a_documents_total_too_large_for_the_source_names_the_task_file_field_not_samples(tmp_path, tiny_model_dir,
                                                                                       capsys):
    path = documents_config(tmp_path, tiny_model_dir, samples=1, controls=[])
    task = tmp_path / "tasks" / "docs.yaml"
    task.write_text(TASK.replace("total: 4", "total: 50"))
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: {path}: tasks[0]: {task}: documents.total: only 39 distractors"), line
    assert "lower documents.total to at most 40" in line and "samples" not in line



@pytest.mark.parametrize(("budget", "warned"), [(20, True), (100, False)])
def test_a_whole_line_metric_with_a_short_budget_is_warned_with_the_numbers(tmp_path, tiny_model_dir, capsys, budget,
                                                                            warned):
    """Liu et al.'s metric reads the whole first line: 20 tokens cut most NQ answers off (the flagship's did)."""
    path = documents_config(tmp_path, tiny_model_dir, models=[{"name": str(tiny_model_dir), "device": "cpu",
                                                                "max_new_tokens": budget}])
    assert main(["validate", str(path)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    expected = (f"warning: {path}: models[0].max_new_tokens: 20 tokens may cut task docs's answers before their "
                "line ends (best_subspan_em reads the whole first line; Liu et al. allow 100)")
    assert [line.startswith(expected) for line in lines] == ([True] if warned else [])


def test_the_decision_block_states_a_notable_truncation_rate():
    import pandas as pd

    from evalkit.report.analysis.truncation import notable_truncation

    def trials(cut: int, total: int) -> pd.DataFrame:
        return pd.DataFrame({"extra": [{"truncated": i < cut} for i in range(total)]})

    assert notable_truncation(trials(197, 280)) == (197, 280)
    assert notable_truncation(trials(3, 100)) is None  # 3% and below: not stated
    assert notable_truncation(trials(4, 100)) == (4, 100)


@pytest.mark.parametrize(("metric", "generated", "cut"), [
    ("liu", " Rodney Crowell\nAnswer: Rodney Crowell\nAnswer: Rod", False),  # the scored line ended: nothing lost
    ("liu", "\n\nThe answer is", False),  # Liu's first line is the empty one, and it ended
    ("liu", " The singer-songwriter Rodney", True),  # the line never ended: the budget cut it
    ("subspan_em", " Rodney Crowell\nmore", False),
    ("best_subspan_em", " Rodney", True),
    ("exact_match", "\n\n 62\nmore", False),  # its first non-empty line ended
    ("exact_match", "\n\n 62 years", True),
    ("contains", " 62\nmore", True),  # reads the whole answer: any cut may matter
    ("keyword_recall", " 62\nmore", True),
])
def test_a_budget_that_ran_out_after_the_scored_line_ended_cut_nothing(metric, generated, cut):
    import pandas as pd

    from evalkit.report.analysis.truncation import truncated_count
    from evalkit.scoring import answer_cut_off

    assert answer_cut_off({"truncated": True}, generated, metric) is cut
    assert answer_cut_off({"truncated": False}, generated, metric) is False  # stopped by a stop token
    trials = pd.DataFrame({"extra": [{"truncated": True}] * 3, "generated": [generated] * 3, "metric": [metric] * 3})
    assert truncated_count(trials) == (3 if cut else 0)
    # an answer scored right is right whatever the budget cut after it: only wrong ones are counted
    scored = trials.assign(correct=[True, False, True])
    assert truncated_count(scored) == (1 if cut else 0)


def test_a_miss_with_a_whole_value_is_not_counted_as_cut_off():
    """A base model that writes a look-alike's whole number and runs on was decided by that number, not the cut.

    The distractors example's Gemma 3 misses all ran out of max_new_tokens (it never stops) after a complete
    7-digit number; the decision block called 38% of them possibly wrong only because they were cut.
    """
    import pandas as pd

    from evalkit.report.analysis.truncation import truncated_count

    trials = pd.DataFrame({
        "extra": [{"truncated": True}] * 5,
        "generated": [" 1508619.\n\nQuestion:", " 1170808. The", " The special", " The special", " 7487674. The"],
        "metric": ["contains"] * 5,
        "failure": ["distractor", "absent", "truncated", "", "correct"],  # "": a record from before failure types
        "correct": [False, False, False, False, True],
    })
    assert truncated_count(trials) == 2  # the failure type's "truncated" and the old record by its budget rule

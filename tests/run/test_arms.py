"""Mitigation arms in runs (evalkit/run/arms.py and the runner): records of every arm pair one-to-one with the
baseline's, an arm inside the model leaves the baseline untouched, top-k heads come from a previous run."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from evalkit.cli import main
from evalkit.config.schema import load_config
from evalkit.report.data.attention import load_attention_argmax
from evalkit.report import write_report
from evalkit.report.data.load import load_results
from evalkit.store.format import read_header
from evalkit.run.arms import head_scores, top_retrieval_heads
from evalkit.run.runner import run_eval
from run_fixtures import records
from run_fixtures import tiny_config as _tiny_config

DATA = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
TASK = "name: docs\ndocuments:\n  source: {format: liu_qa, path: nq-open-oracle-40.jsonl}\n  total: 4\n" \
       "metric: best_subspan_em\n"


def tiny_config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)  # several configs (and runs) side by side in one test
    return _tiny_config(tmp_path, model_dir, **changes)


RANDOM = {"arm": "mask_heads", "name": "random2", "random_k": 2, "seed": 3}


def _documents_config(tmp_path: Path, model_dir: Path, **changes) -> Path:
    (tmp_path / "tasks").mkdir(parents=True, exist_ok=True)
    (tmp_path / "tasks" / "docs.yaml").write_text(TASK)
    fields = dict(tasks=["docs"], task_dirs=["tasks"], data_dir=str(DATA), context_lengths=[1024],
                  depths=[0.0, 1.0], samples=2, controls=["closed_book"])
    fields.update(changes)
    return tiny_config(tmp_path, model_dir, **fields)


def _key(record: dict) -> tuple:
    depth = None if math.isnan(record["depth"]) else record["depth"]
    return record["sample"], record["context_length"], depth, record["control"]


def test_every_arms_records_pair_with_the_baseline_and_masking_leaves_the_baseline_as_it_was(
        tmp_path, tiny_model_dir, single_thread):
    plain = _documents_config(tmp_path / "plain", tiny_model_dir)
    plain_rows = records(run_eval(load_config(plain), plain, quiet=True, write_report=False).run_dir)
    # the masking arm runs first: the baseline after it must not see its hooks or a cache built under them
    path = _documents_config(tmp_path, tiny_model_dir, mitigations=[RANDOM, "none", "reorder_by_relevance"])
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    rows = records(summary.run_dir)
    by_arm = {arm: {_key(r): r for r in rows if r["mitigation"] == arm}
              for arm in ("none", "random2", "reorder_by_relevance")}
    assert len(rows) == 3 * len(plain_rows) and all(len(v) == len(plain_rows) for v in by_arm.values())
    assert by_arm["none"].keys() == by_arm["random2"].keys() == by_arm["reorder_by_relevance"].keys()
    assert {r["trial_id"]: r["generated"] for r in plain_rows} == {
        r["trial_id"]: r["generated"] for r in by_arm["none"].values()}
    masked = [r["extra"]["masked_heads"] for r in by_arm["random2"].values()]
    assert all(m == masked[0] for m in masked) and len(masked[0]) == 2
    assert not any("masked_heads" in r["extra"] for r in rows if r["mitigation"] != "random2")
    assert any(by_arm["random2"][k]["gold_logprob_sum"] != r["gold_logprob_sum"] for k, r in by_arm["none"].items())
    assert all(r["extra_forwards"] == 0 and r["extra_prompt_tokens"] == 0 for r in rows)
    # reordered trials of one sample and length are one prompt, the gold wherever BM25 put it
    reordered = [r for r in by_arm["reorder_by_relevance"].values() if not r["control"]]
    assert {r["sample"]: r["prompt_sha256"] for r in reordered if r["depth"] == 0.0} == {
        r["sample"]: r["prompt_sha256"] for r in reordered if r["depth"] == 1.0}
    frame = load_results(summary.run_dir)
    assert frame["mitigation"].dtype == frame["task"].dtype and set(frame["mitigation"]) == {"none", "random2",
                                                                                 "reorder_by_relevance"}
    again = run_eval(load_config(path), path, quiet=True, write_report=False)
    assert again.ran == 0 and again.already_done == len(rows)
    # the plan's cells are the baseline's (what the report's sections count); each arm planned as many
    planned = read_header(summary.run_dir)["planned"]
    assert planned["trials"] == len(plain_rows) and planned["arms"] == dict.fromkeys(by_arm, len(plain_rows))
    text = write_report(summary.run_dir, tmp_path / "report").report_md.read_text()
    assert "Incomplete run" not in text and "## Does a fix help?" in text


def test_sorting_a_task_without_documents_is_refused_before_the_run_dir_exists(tmp_path, tiny_model_dir, capsys):
    path = tiny_config(tmp_path, tiny_model_dir, mitigations=["none", "attention_sort"],
                       attention={"capture": True})
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        assert main(command) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "mitigations[1]: attention_sort sorts documents" in line and "passkey" in line
        assert not (tmp_path / "run").exists()


def test_reordering_a_multi_needle_task_is_refused_naming_the_arm(tmp_path, tiny_model_dir, capsys):
    path = tiny_config(tmp_path, tiny_model_dir, tasks=["multikey"], mitigations=["none", "reorder_by_relevance"])
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "mitigations[1]: reorder_by_relevance is not defined for the multi-needle task multikey" in line


def test_reordering_a_needle_task_runs_paired_with_the_baseline(tmp_path, tiny_model_dir, single_thread):
    path = tiny_config(tmp_path, tiny_model_dir, depths=[0.0, 0.5], samples=1,
                       mitigations=["none", "reorder_by_relevance"])
    rows = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    base = {_key(r): r for r in rows if r["mitigation"] == "none"}
    moved = {_key(r): r for r in rows if r["mitigation"] == "reorder_by_relevance"}
    assert base.keys() == moved.keys() and len(base) == 2 * len(load_config(path).context_lengths)
    assert all(moved[k]["prompt_tokens"] == r["prompt_tokens"] for k, r in base.items())
    assert any(moved[k]["achieved_depth"] != r["achieved_depth"] for k, r in base.items())


def test_top_k_heads_are_the_previous_runs_heads_with_the_most_copy_events(tmp_path, tiny_model_dir, single_thread):
    first = tiny_config(tmp_path / "a", tiny_model_dir, context_lengths=[128], depths=[0.0, 0.5, 1.0],
                        attention={"capture": True, "decode_steps": 3})
    run_dir = run_eval(load_config(first), first, quiet=True, write_report=False).run_dir
    copies, needle, trials = head_scores(run_dir, str(tiny_model_dir))
    assert trials == 6 and copies.shape == (2, 4)
    counted = load_attention_argmax(run_dir).groupby(["layer", "head"])["copies_needle"].sum()
    np.testing.assert_array_equal(copies, counted.to_numpy().reshape(2, 4))  # as the report counts them
    top = top_retrieval_heads(run_dir, str(tiny_model_dir), 3)
    ranked = sorted(((-copies[a, b], -needle[a, b]), [a, b]) for a in range(2) for b in range(4))
    assert top == sorted(pair for _, pair in ranked[:3])
    second = tiny_config(tmp_path / "b", tiny_model_dir, context_lengths=[128], depths=[0.5], samples=1,
                         mitigations=["none", {"arm": "mask_heads", "name": "top3", "from_run": str(run_dir),
                                               "top_k": 3}])
    rows = records(run_eval(load_config(second), second, quiet=True, write_report=False).run_dir)
    assert [r["extra"]["masked_heads"] for r in rows if r["mitigation"] == "top3"] == [top]


def test_top_k_without_from_run_takes_this_runs_baseline_heads(tmp_path, tiny_model_dir, single_thread):
    """The config needs no earlier run: the baseline runs first and its arrays give the arm's heads."""
    top3 = {"arm": "mask_heads", "name": "top3", "top_k": 3}
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.0, 0.5, 1.0],
                       attention={"capture": True, "decode_steps": 3}, mitigations=["none", top3])
    run_dir = run_eval(load_config(path), path, quiet=True, write_report=False).run_dir
    rows = records(run_dir)
    expected = top_retrieval_heads(run_dir, str(tiny_model_dir), 3)  # reads baseline trials only
    masked = [r["extra"]["masked_heads"] for r in rows if r["mitigation"] == "top3"]
    assert len(masked) == 6 and all(heads == expected for heads in masked)
    baseline = tiny_config(tmp_path / "base", tiny_model_dir, context_lengths=[128], depths=[0.0, 0.5, 1.0],
                           attention={"capture": True, "decode_steps": 3})
    base_dir = run_eval(load_config(baseline), baseline, quiet=True, write_report=False).run_dir
    assert top_retrieval_heads(base_dir, str(tiny_model_dir), 3) == expected  # the same heads a prior run gives


def test_top_k_from_this_run_is_refused_for_several_processes(tmp_path, tiny_model_dir, capsys, monkeypatch):
    path = tiny_config(tmp_path, tiny_model_dir, attention={"capture": True},
                       mitigations=["none", {"arm": "mask_heads", "top_k": 2}])
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(["run", str(path), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "mitigations[1]" in line and "WORLD_SIZE is 2" in line and "from_run" in line
    assert not (tmp_path / "run").exists()


def test_a_from_run_without_attention_is_refused_naming_the_field(tmp_path, tiny_model_dir, capsys, single_thread):
    empty = tiny_config(tmp_path / "a", tiny_model_dir, context_lengths=[128], depths=[0.0], samples=1)
    run_dir = run_eval(load_config(empty), empty, quiet=True, write_report=False).run_dir
    path = tiny_config(tmp_path / "b", tiny_model_dir, mitigations=[
        "none", {"arm": "mask_heads", "from_run": str(run_dir), "top_k": 2}])
    capsys.readouterr()  # the first run's progress output
    for command in ("validate", "run"):
        assert main([command, str(path), "--quiet"] if command == "run" else [command, str(path)]) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "mitigations[1].from_run" in line and "no attention arrays" in line and "capture: true" in line
        assert not (tmp_path / "b" / "run").exists()


def test_attention_sort_orders_the_second_pass_by_the_first_passes_document_masses(tmp_path, tiny_model_dir,
                                                                                  single_thread):
    from evalkit.store.format import attention_path, read_trial_attention

    path = _documents_config(tmp_path, tiny_model_dir, depths=[0.5], samples=2, controls=[], save_prompts=True,
                             attention={"capture": True, "bins": 2}, mitigations=["none", "attention_sort"])
    run_dir = run_eval(load_config(path), path, quiet=True, write_report=False).run_dir
    rows = records(run_dir)
    for sample in range(2):
        base = next(r for r in rows if r["mitigation"] == "none" and r["sample"] == sample)
        sort = next(r for r in rows if r["mitigation"] == "attention_sort" and r["sample"] == sample)
        # the first pass is the baseline's prompt: its masses are the baseline's captured document masses
        att = read_trial_attention(attention_path(run_dir, base["trial_id"]))
        expected = att.mass[:, :, 0, att.document_slice].mean(axis=(0, 1))
        masses = sort["extra"]["first_pass_masses"]
        np.testing.assert_allclose(masses, expected, atol=2e-6)
        order = sort["extra"]["first_pass_order"]
        assert order == sorted(range(4), key=lambda i: masses[i])  # ascending: the most attended goes last
        assert [masses[i] for i in order] == sorted(masses)
        assert sort["extra"]["first_pass_gold_index"] == base["gold_document_index"] == 2
        assert sort["gold_document_index"] == order.index(base["gold_document_index"])
        assert (sort["extra_forwards"], sort["extra_prompt_tokens"]) == (1, base["prompt_tokens"])
        assert base["extra_forwards"] == 0 and "first_pass_order" not in base["extra"]


def test_attention_sort_without_capture_is_refused(tmp_path, tiny_model_dir, capsys):
    path = _documents_config(tmp_path, tiny_model_dir, mitigations=["none", "attention_sort"])
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "mitigations[1]: attention_sort reads attention per document" in line and "capture: true" in line


CALIBRATE = {"arm": "calibrate_attention", "name": "calibrated"}


def test_calibration_at_strength_zero_is_the_baseline_exactly_and_at_one_changes_the_answer_rows(
        tmp_path, tiny_model_dir, single_thread):
    from evalkit.store.format import attention_path, read_trial_attention

    zero = dict(CALIBRATE, name="strength0", strength=0.0)
    path = _documents_config(tmp_path, tiny_model_dir, depths=[0.0, 1.0], samples=2, controls=["closed_book"],
                             attention={"capture": True, "bins": 2}, mitigations=["none", zero, CALIBRATE])
    run_dir = run_eval(load_config(path), path, quiet=True, write_report=False).run_dir
    rows = records(run_dir)
    by_arm = {arm: {_key(r): r for r in rows if r["mitigation"] == arm} for arm in ("none", "strength0", "calibrated")}
    assert by_arm["none"].keys() == by_arm["strength0"].keys() == by_arm["calibrated"].keys()
    for key, base in by_arm["none"].items():
        same = by_arm["strength0"][key]
        assert (same["generated"], same["gold_logprob_sum"]) == (base["generated"], base["gold_logprob_sum"])
        if base["control"]:  # closed book has no documents: no probe, no calibration
            assert by_arm["calibrated"][key]["extra_forwards"] == 0
            continue
        np.testing.assert_array_equal(read_trial_attention(attention_path(run_dir, same["trial_id"])).mass,
                                      read_trial_attention(attention_path(run_dir, base["trial_id"])).mass)
        assert same["extra_forwards"] == 1 and same["extra"]["calibration_bias"] is None
        calibrated = by_arm["calibrated"][key]
        assert calibrated["extra_forwards"] == 1 and abs(calibrated["extra_prompt_tokens"] - base["prompt_tokens"]) < 40
        bias = calibrated["extra"]["calibration_bias"]
        assert len(bias) == 4 and calibrated["extra"]["calibrated_layers"] == [1] and np.std(bias) > 0
        assert calibrated["prompt_sha256"] == base["prompt_sha256"]  # the prompt is the baseline's
        # the answer row's attention is the calibrated one: documents the probe favoured lose mass
        base_mass = read_trial_attention(attention_path(run_dir, base["trial_id"]))
        cal_mass = read_trial_attention(attention_path(run_dir, calibrated["trial_id"]))
        assert not np.allclose(base_mass.mass, cal_mass.mass, atol=1e-4)
    assert any(by_arm["calibrated"][k]["gold_logprob_sum"] != r["gold_logprob_sum"] for k, r in by_arm["none"].items())


def test_calibration_refuses_layers_the_model_lacks_and_runs_only_with_capture(tmp_path, tiny_model_dir, capsys,
                                                                             single_thread):
    path = _documents_config(tmp_path, tiny_model_dir, mitigations=["none", CALIBRATE])
    assert main(["validate", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "mitigations[1]: calibrate_attention reads attention per document" in line and "capture: true" in line
    wrong = _documents_config(tmp_path / "b", tiny_model_dir, depths=[0.0], samples=1, controls=[],
                              attention={"capture": True}, mitigations=["none", dict(CALIBRATE, layers=[0, 5])])
    assert main(["run", str(wrong), "--quiet"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{wrong}: mitigations[1].layers: [5] are not layers of {tiny_model_dir} (layers 0-1)" in line


# --- arm options and from_run arrays are checked before anything is written (validate and run alike)


def _refused_by_validate_and_run(path: Path, capsys) -> list[str]:
    """Both commands exit 2 with one line and leave no run directory; their two lines."""
    lines = []
    for command in (["validate", str(path)], ["run", str(path), "--quiet"]):
        assert main(command) == 2, command
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        lines.append(err)
        assert not (path.parent / "run").exists(), command  # no header, record or attention array written
    return lines


@pytest.mark.parametrize(("arm", "expected"), [
    ({"arm": "mask_heads", "heads": [[99, 0]]},
     "mitigations[1].heads: [[99, 0]] are not in this model: {model} has layers 0-1 and heads 0-3 (8 heads)"),
    ({"arm": "mask_heads", "heads": [[1, 4]]}, "mitigations[1].heads: [[1, 4]] are not in this model"),
    ({"arm": "mask_heads", "random_k": 1000}, "mitigations[1].random_k: 1000 is above the model's heads: {model} has "
                                              "layers 0-1 and heads 0-3 (8 heads); use random_k <= 8"),
    (dict(CALIBRATE, layers=[99]), "mitigations[1].layers: [99] are not layers of {model} (layers 0-1); list layers "
                                   "from 0 to 1"),
])
def test_arm_heads_and_layers_the_model_lacks_are_refused_before_anything_is_written(tmp_path, tiny_model_dir, capsys,
                                                                                   single_thread, arm, expected):
    path = _documents_config(tmp_path, tiny_model_dir, depths=[0.0], samples=1, controls=[],
                             attention={"capture": True}, mitigations=["none", arm])
    for line in _refused_by_validate_and_run(path, capsys):
        assert f"{path}: " + expected.format(model=tiny_model_dir) in line


@pytest.fixture(scope="module")
def captured_run(tmp_path_factory, tiny_model_dir) -> Path:
    """A run of the tiny model with attention captured: two baseline trials, each with its array."""
    base = tmp_path_factory.mktemp("captured")
    path = tiny_config(base, tiny_model_dir, context_lengths=[128], depths=[0.0, 1.0], samples=1,
                       attention={"capture": True, "decode_steps": 2})
    return run_eval(load_config(path), path, quiet=True, write_report=False).run_dir


def _rewrite_npz(path: Path, **changes) -> None:
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update({name: change(arrays[name]) for name, change in changes.items()})
    np.savez_compressed(path, **arrays)


def _three_layers(array: np.ndarray) -> np.ndarray:
    return np.concatenate([array, array[:1]], axis=0)  # one layer more than the model has


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:300])


TAMPERED = {
    "truncated npz": (_truncate, "corrupt evalkit attention array (File is not a zip file)"),
    "no needle region": (lambda p: _rewrite_npz(p, region_names=lambda a: np.where(a == "needle", "haystack", a)),
                         "has no 'needle' region"),
    "3 layers, the model has 2": (lambda p: _rewrite_npz(p, **dict.fromkeys(
        ("mass", "remainder", "argmax_position", "argmax_token"), _three_layers)),
                                  "attention of 3 layers x 4 heads, but {model} has 2 x 4"),
}


@pytest.mark.parametrize("case", TAMPERED)
def test_a_tampered_from_run_array_is_one_line_naming_the_file(tmp_path, tiny_model_dir, captured_run, capsys,
                                                             single_thread, case):
    import shutil

    tamper, expected = TAMPERED[case]
    source = shutil.copytree(captured_run, tmp_path / "source")
    first = records(source)[0]["trial_id"]  # the first array read: no other array to compare it with
    array = source / "attention" / f"{first}.npz"
    tamper(array)
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.5], samples=1, mitigations=[
        "none", {"arm": "mask_heads", "from_run": str(source), "top_k": 2}])
    for line in _refused_by_validate_and_run(path, capsys):
        assert f"{path}: mitigations[1].from_run: {array}: " in line
        assert expected.format(model=tiny_model_dir) in line


def test_a_from_run_folder_without_a_header_is_refused(tmp_path, tiny_model_dir, captured_run, capsys, single_thread):
    import shutil

    source = shutil.copytree(captured_run, tmp_path / "source")
    (source / "header.json").unlink()  # records and arrays alone, copied by hand: no run to trust
    path = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.5], samples=1, mitigations=[
        "none", {"arm": "mask_heads", "from_run": str(source), "top_k": 2}])
    for line in _refused_by_validate_and_run(path, capsys):
        assert f"{path}: mitigations[1].from_run: {source}: not an evalkit run directory: no header.json" in line

"""Attention capture in runs: arrays per trial, resume, loaders, unchanged generation, refusal of a family."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evalkit import load_attention, load_attention_argmax
from evalkit.attention import PARTITION
from evalkit.store.format import read_trial_attention
from evalkit.store.format import attention_path
from evalkit.config.schema import load_config
from evalkit.errors import CaptureError
from evalkit.run.runner import run_eval
from run_fixtures import records, tiny_config

CAPTURE = {"capture": True, "decode_steps": 2, "bins": 4, "sink_tokens": 1}


def _run(path: Path, **kwargs):
    return run_eval(load_config(path), path, quiet=True, write_report=False, **kwargs)


def test_capture_stores_one_array_per_record_and_masses_sum_to_one(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, attention=CAPTURE, context_lengths=[128], samples=1)
    summary = _run(path)
    rows = records(summary.run_dir)
    assert len(rows) == 3
    for record in rows:
        att = read_trial_attention(attention_path(summary.run_dir, record["trial_id"]))
        regions = len(PARTITION) + 4
        assert att.mass.shape == (2, 4, 3, regions)  # [layers, heads, rows (prefill + 2 decode), regions]
        assert att.region_names[: len(PARTITION)] == PARTITION
        # the partition tiles every key: masses are >= 0 and with the remainder sum to 1 per layer, head, row
        assert np.all(att.mass >= 0) and np.all(np.abs(att.remainder) < 1e-5)
        np.testing.assert_allclose(att.mass[..., : len(PARTITION)].sum(-1) + att.remainder, 1.0, atol=1e-6)
        # the bins split the haystack exactly: their sum is the mass of context_before + needle + context_after
        haystack = sum(att.region(n) for n in ("context_before", "needle", "context_after"))
        np.testing.assert_allclose(att.mass[..., len(PARTITION):].sum(-1), haystack, atol=1e-5)
        assert np.all(att.region("generated")[:, :, 0] == 0) and np.all(att.region("generated")[:, :, 1:] > 0)
        assert tuple(att.spans[PARTITION.index("needle")]) == tuple(record["regions"]["needle"])
        assert att.spans[0].tolist() == [0, 1] and att.spans[1][0] == 1  # the sink is carved out of the preamble
        assert np.all(att.argmax_position >= 0) and np.all(att.argmax_position < record["prompt_tokens"] + 2)


def test_load_attention_is_long_and_complete(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, attention=CAPTURE, context_lengths=[128], depths=[0.5], samples=2)
    run_dir = _run(path).run_dir
    frame = load_attention(run_dir)
    regions = len(PARTITION) + 1 + 4  # partition, remainder, bins
    assert len(frame) == 2 * 2 * 4 * 3 * regions  # trials x layers x heads x rows x regions
    assert {"trial_id", "model", "context_length", "depth", "achieved_depth", "correct", "layer", "head", "row",
            "region", "mass", "partition"} <= set(frame.columns)
    sums = frame[frame["partition"]].groupby(["trial_id", "layer", "head", "row"], observed=True)["mass"].sum()
    np.testing.assert_allclose(sums.to_numpy(), 1.0, atol=1e-5)
    argmax = load_attention_argmax(run_dir)
    assert len(argmax) == 2 * 2 * 4 * 3
    assert not argmax["copies_needle"][~argmax["argmax_in_needle"]].any()


def test_resume_skips_done_trials_and_redoes_a_trial_whose_record_is_missing(tmp_path, tiny_model_dir):
    path = tiny_config(tmp_path, tiny_model_dir, attention=CAPTURE)
    first = _run(path, limit=4)
    done = {r["trial_id"]: attention_path(first.run_dir, r["trial_id"]).stat().st_mtime_ns
            for r in records(first.run_dir)}
    # a run killed between writing an array and appending its record: the array is there, the record is not
    orphan_id = next(t for t in _planned_ids(path) if t not in done)
    orphan = attention_path(first.run_dir, orphan_id)
    orphan.write_bytes(b"torn")
    second = _run(path)
    assert (second.already_done, second.ran) == (4, 8)
    assert {t: attention_path(first.run_dir, t).stat().st_mtime_ns for t in done} == done  # not rewritten
    assert read_trial_attention(orphan).mass.shape[0] == 2  # overwritten by the redone trial
    ids = [r["trial_id"] for r in records(first.run_dir)]
    assert sorted(p.stem for p in (first.run_dir / "attention").glob("*.npz")) == sorted(ids)
    assert not list((first.run_dir / "attention").glob(".*tmp*"))


def _planned_ids(path: Path) -> list[str]:
    from evalkit.run.plan import expand
    from evalkit.run.preflight import check_model_limits, prepare_tasks

    config = load_config(path)
    tasks = prepare_tasks(config, path)
    return [t.trial_id for t in expand(config, {n: t.spec for n, t in tasks.items()}, check_model_limits(config, path))]


def test_generation_and_gold_logprob_unchanged_by_capture(tmp_path, tiny_model_dir):
    outputs = []
    for name, attention in (("off", {"capture": False}), ("on", CAPTURE)):
        path = tiny_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / name), attention=attention,
                           context_lengths=[128, 160], samples=1)
        outputs.append({r["trial_id"]: r for r in records(_run(path).run_dir)})
    assert outputs[0].keys() == outputs[1].keys() and len(outputs[0]) == 6
    for trial_id, off in outputs[0].items():
        on = outputs[1][trial_id]
        assert on["generated"] == off["generated"]
        assert on["gold_logprob_sum"] == off["gold_logprob_sum"]  # exactly: the same kernel computed both
    assert not (tmp_path / "off" / "attention").exists()


def test_prefix_reuse_leaves_the_captured_attention_unchanged(tmp_path, tiny_model_dir):
    """Reuse feeds the prompt as prefix + extension; the captured rows see the same keys either way."""
    runs = {}
    for reuse in (False, True):
        path = tiny_config(tmp_path, tiny_model_dir, output_dir=str(tmp_path / f"reuse-{reuse}"), attention=CAPTURE,
                           context_lengths=[160], depths=[0.0, 0.5, 1.0], samples=1, reuse_prefix=reuse)
        run_dir = _run(path).run_dir
        runs[reuse] = (run_dir, {r["trial_id"]: r for r in records(run_dir)})
    (plain_dir, plain), (reused_dir, reused) = runs[False], runs[True]
    assert plain.keys() == reused.keys() and len(plain) == 3
    for trial_id in plain:
        assert reused[trial_id]["generated"] == plain[trial_id]["generated"]
        a = read_trial_attention(attention_path(plain_dir, trial_id))
        b = read_trial_attention(attention_path(reused_dir, trial_id))
        np.testing.assert_allclose(b.mass, a.mass, atol=1e-4)  # float16 storage; same keys, other chunking
        assert np.array_equal(a.spans, b.spans)


@pytest.fixture(scope="module")
def mamba_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny Mamba config + tokenizer: no attention layers in any transformers version, so never capturable."""
    from transformers import MambaConfig

    folder = tmp_path_factory.mktemp("tiny-mamba")
    MambaConfig(hidden_size=32, num_hidden_layers=2, state_size=4, vocab_size=len(smollm2_tokenizer)).save_pretrained(
        folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def test_unsupported_family_is_refused_before_anything_is_written(tmp_path, mamba_dir):
    """Refused from the config alone: the folder holds no weights, so a refusal after loading would fail otherwise."""
    path = tiny_config(tmp_path, mamba_dir, attention={"capture": True})
    with pytest.raises(CaptureError, match=r"models\[0\].*'mamba'.*set attention.capture: false"):
        _run(path)
    assert not (tmp_path / "run").exists()


def test_dummy_needle_calibration_pairs_each_trial_with_its_dummy(tmp_path, tiny_model_dir):
    """Needle mass minus the mass of a same-length dummy sentence at the same place (issue 4's calibration)."""
    import pandas as pd

    from evalkit.report import load_results, write_report
    from evalkit.report.analysis.attention_calibration import dummy_calibration_table

    path = tiny_config(tmp_path, tiny_model_dir, attention=CAPTURE, context_lengths=[160], depths=[0.0, 1.0],
                       samples=2, controls=["dummy_needle"])
    run_dir = _run(path).run_dir
    records = load_results([run_dir])
    table = dummy_calibration_table(records)
    assert len(table) == 2 and (table["n"] == 2).all()
    # by hand: the row-0 needle-region mass of each trial, mean over layers and heads, paired by sample
    mass = {}
    for r in records.itertuples(index=False):
        att = read_trial_attention(attention_path(run_dir, r.trial_id))
        mass[(r.control, r.depth, r.sample)] = float(att.region("needle")[:, :, 0].mean())
    for row in table.itertuples(index=False):
        diffs = [mass[("", row.depth, s)] - mass[("dummy_needle", row.depth, s)] for s in (0, 1)]
        assert row.difference == pytest.approx(sum(diffs) / 2, abs=1e-6)
        assert row.diff_low <= row.difference <= row.diff_high
    report = write_report([run_dir], tmp_path / "report")
    assert "Needle vs dummy needle" in report.report_md.read_text()
    assert not pd.read_csv(tmp_path / "report" / "attention_dummy_calibration.csv").empty

"""A model and its untrained control (``init: random``) in one config, end to end on the tiny model: their own
trial ids and labels in the records, init in the header, and a report that does not present the control's accuracy."""

from __future__ import annotations

import csv
import json

from evalkit.cli import main
from evalkit.report.data.untrained import UNTRAINED_NOTE
from run_fixtures import records, tiny_config


def _report(run_dir) -> str:
    return (run_dir / "report" / "report.md").read_text(encoding="utf-8")


def _summary_models(run_dir) -> set[str]:
    with (run_dir / "report" / "summary.csv").open(encoding="utf-8") as handle:
        return {row["model"] for row in csv.DictReader(handle)}


def test_a_model_and_its_random_control_run_side_by_side_and_the_report_labels_the_control(
        tmp_path, tiny_model_dir, single_thread):
    trained = {"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}
    control = {**trained, "init": "random", "init_seed": 3}
    label = f"{tiny_model_dir} (random init, seed 3)"
    # the control first: --limit 2 (plan order is model-major) runs only its two trials
    path = tiny_config(tmp_path, tiny_model_dir, models=[control, trained], context_lengths=[128],
                       depths=[0.0, 1.0], samples=1, attention={"capture": True, "bins": 4})
    run_dir = tmp_path / "run"

    # a report of the control alone: nothing to decide, its accuracy in no table
    assert main(["run", str(path), "--limit", "2", "--quiet"]) == 0
    alone = _report(run_dir)
    assert "No completed trials of a trained model." in alone
    assert f"### {label}" in alone and f"**Untrained control:** {UNTRAINED_NOTE}." in alone
    assert _summary_models(run_dir) == set()

    # the trained model's trials join the same run (resumed), each model with its own ids and label
    assert main(["run", str(path), "--limit", "4", "--quiet"]) == 0
    rows = records(run_dir)
    assert len({r["trial_id"] for r in rows}) == len(rows) == 4
    assert sorted(r["model"] for r in rows) == sorted([label, label, str(tiny_model_dir), str(tiny_model_dir)])
    assert len({r["model_revision"] for r in rows}) == 1  # the control's revision is its config's: the same folder
    header = json.loads((run_dir / "header.json").read_text())
    assert set(header["models"]) == {label, str(tiny_model_dir)}
    assert header["model_facts"][label]["init"] == "random" and header["model_facts"][label]["init_seed"] == 3
    assert header["model_facts"][str(tiny_model_dir)]["init"] == "pretrained"

    text = _report(run_dir)
    decision, _, body = text.partition("Tables: ")
    # the decision block decides for the trained model only; the control gets the note in its place
    assert f"Where is it safe: {tiny_model_dir}]" in decision and f"Where is it safe: {label}" not in decision
    assert f"### {label}\n\n> **Untrained control:** {UNTRAINED_NOTE}. Its 2 completed trials are left out" in decision
    assert _summary_models(run_dir) == {str(tiny_model_dir)}
    assert f"### {label} · " not in body.partition("## Attention inside the model")[0]  # no accuracy section
    assert f"| {label} |" not in body  # nor a row of an accuracy table
    assert f"shown as: {tiny_model_dir}, {label} (untrained control: {UNTRAINED_NOTE})" in body
    # its attention by position right after the trained model's, with the note
    attention = body.partition("## Attention inside the model")[2]
    assert 0 <= attention.find(f"### {tiny_model_dir} · passkey") < attention.find(f"### {label} · passkey")
    assert f"### {label} · passkey\n\n> Untrained control: {UNTRAINED_NOTE}." in attention
    assert f"Attention by position in the prompt, with and without the sink · {label} · passkey" in attention

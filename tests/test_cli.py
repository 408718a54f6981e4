"""The CLI as a user runs it: the embedded default model end to end, and one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from conftest import write_config

REPO = Path(__file__).resolve().parent.parent


def evalkit(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "evalkit", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_quickstart_grid_end_to_end_on_the_embedded_model(tmp_path):
    """A tiny grid of the quickstart on SmolLM2: records, tables, both charts; a rerun skips all."""
    out = tmp_path / "run"
    args = ["run", "configs/quickstart.yaml", "--output-dir", str(out), "--quiet",
            "--set", "context_lengths=[160,320]", "--set", "depths=[0,0.5]", "--set", "samples=1"]
    first = evalkit(*args)
    assert first.returncode == 0, first.stderr
    assert "4 trials run" in first.stdout
    lines = (out / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 4
    with open(out / "report" / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["context_length"], r["depth"]) for r in rows} == {("160", "0.0"), ("160", "0.5"), ("320", "0.0"), ("320", "0.5")}
    # the trained model finds the pass key in some cells and is confident of it in all: a random model
    # would put about -ln(49152) = -10.8 nats on each gold token
    assert any(float(r["accuracy"]) == 1.0 for r in rows)
    records = [json.loads(line) for line in lines]
    assert all(r["gold_logprob_mean"] > -2.0 for r in records), [r["gold_logprob_mean"] for r in records]
    charts = sorted(p.name for p in (out / "report").glob("*.png"))
    assert any(n.startswith("heatmap") for n in charts) and any(n.startswith("accuracy_vs_depth") for n in charts)
    assert (out / "report" / "report.md").stat().st_size > 0
    second = evalkit(*args)
    assert second.returncode == 0, second.stderr
    assert "0 trials run, 4 already done" in second.stdout
    assert (out / "trials.jsonl").read_text().splitlines() == lines


def test_bad_config_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    path = write_config(tmp_path / "bad.yaml", models=["smollm2-135m-instruct"], tasks=["passkey"],
                        context_lengths=[256], depths=[0.5, 1.7], samples=1, output_dir=str(out))
    result = evalkit("run", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "bad.yaml" in line and "depths" in line and "1.7" in line
    assert not out.exists()


def test_length_above_the_model_maximum_is_refused_before_running(tmp_path):
    out = tmp_path / "run"
    result = evalkit("validate", "configs/quickstart.yaml", "--output-dir", str(out),
                     "--set", "context_lengths=[1024,9000]")
    assert result.returncode == 2, result.stdout
    assert "Traceback" not in result.stderr
    assert "9000" in result.stderr and "8192" in result.stderr
    assert not out.exists()


def test_unknown_task_lists_known_ones(tmp_path):
    result = evalkit("validate", "configs/quickstart.yaml", "--set", "tasks=[passkee]")
    assert result.returncode == 2
    assert "passkee" in result.stderr and "passkey" in result.stderr and "Traceback" not in result.stderr


def test_list_shows_tasks_and_builtin_models():
    result = evalkit("list")
    assert result.returncode == 0, result.stderr
    assert "passkey" in result.stdout and "fact" in result.stdout and "smollm2-135m-instruct" in result.stdout
    assert "gemma3-270m" in result.stdout and "lost_in_the_middle_qa" in result.stdout
    tasks = result.stdout.split("built-in models:")[0].splitlines()[1:]
    columns = {line.index(description) for line, description in
               ((line, line.split(None, 1)[1]) for line in tasks)}
    assert len(columns) == 1  # descriptions form one column, long task names included


def test_output_dir_is_taken_as_written_not_parsed_as_yaml(tmp_path, tiny_model_dir, capsys):
    """D2: `--output-dir "exp #1"` writes to `exp #1` (YAML would read `exp` and a comment)."""
    from evalkit.cli import main
    from run_fixtures import tiny_config

    config = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.5], samples=1)
    for name in ("exp #1", "exp #2", "[1, 2]", "null"):
        assert main(["run", str(config), "--output-dir", str(tmp_path / name), "--quiet", "--no-report"]) == 0
        assert "1 trials run, 0 already done" in capsys.readouterr().out, name  # never another run's trials
        assert (tmp_path / name / "header.json").is_file() and (tmp_path / name / "trials.jsonl").is_file()
    assert not (tmp_path / "exp").exists()


def test_schema_prints_json_and_writes_it_with_out(tmp_path):
    printed = evalkit("schema", "task")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout)["title"] == "TaskSpec"
    out = tmp_path / "config.schema.json"
    written = evalkit("schema", "config", "--out", str(out))
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == f"schema: {out}"
    assert json.loads(out.read_text())["title"] == "EvalConfig"


def test_schema_refuses_a_missing_folder_and_an_unknown_kind_in_one_line(tmp_path):
    missing = evalkit("schema", "config", "--out", str(tmp_path / "nope" / "config.schema.json"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    (line,) = missing.stderr.strip().splitlines()
    assert "does not exist" in line and str(tmp_path / "nope") in line
    unknown = evalkit("schema", "configs")
    assert unknown.returncode == 2
    (line,) = unknown.stderr.strip().splitlines()
    assert "'configs'" in line and "config" in line and "task" in line
    assert not (tmp_path / "nope").exists()


def test_schema_help_shows_the_editor_line():
    result = evalkit("schema", "--help")
    assert result.returncode == 0
    assert "evalkit schema config --out docs/schema/config.schema.json" in result.stdout
    assert "# yaml-language-server: $schema=../docs/schema/config.schema.json" in result.stdout

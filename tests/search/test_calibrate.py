"""``evalkit calibrate`` end to end on a tiny random model: steps as run directories, trace, fragment, resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from evalkit.cli import main
from evalkit.config.schema import config_hash, load_config
from evalkit.errors import ConfigError
from evalkit.search.calibrate import FRAGMENT_FILE, TRACE_FILE
from evalkit.search.steps import path_part
from run_fixtures import records, tiny_config

SEARCH = {"axis": "context_length", "low": 128, "high": 512, "samples_per_step": 2, "budget": 40}


def _calibrate(tmp_path: Path, tiny_model_dir: Path, capsys, **search) -> tuple[Path, str]:
    path = tiny_config(tmp_path, tiny_model_dir, search={**SEARCH, **search})
    assert main(["calibrate", str(path), "--output-dir", str(tmp_path / "search")]) == 0
    return path, capsys.readouterr().out


def test_calibrate_runs_its_steps_as_runs_writes_trace_and_a_runnable_fragment(tmp_path, tiny_model_dir, capsys):
    path, out = _calibrate(tmp_path, tiny_model_dir, capsys)
    folder = tmp_path / "search"
    trace = json.loads((folder / TRACE_FILE).read_text())
    assert len(trace) == 1 and trace[0]["task"] == "passkey" and trace[0]["depths"] == [0.0, 1.0]
    outcome = trace[0]["outcome"]
    # a random-weight model finds no pass key: the easiest length is already too hard, and the search says so
    assert outcome["status"] == "too_hard" and outcome["setting"] == 128
    steps = outcome["steps"]
    assert [s["setting"] for s in steps][-1] == 128 and all(s["decision"] == "too_hard" for s in steps)
    # every step is a run directory whose records are the trials the trace counts, within the budget
    step_dirs = sorted(p for p in (folder / path_part(str(tiny_model_dir)) / "passkey").iterdir() if p.is_dir())
    ran = sum(len(records(d)) for d in step_dirs)
    assert ran == outcome["trials_used"] == 4 * len(steps) <= SEARCH["budget"]
    assert {d.name for d in step_dirs} == {f"context_length-{s['setting']}" for s in steps}
    assert "context_length 128 (too_hard)" in out and "| decision |" in out and FRAGMENT_FILE in out
    # the fragment is the user's grid at the setting found: it validates and keeps everything but the length
    fragment = Path(trace[0]["fragment"])
    calibrated = load_config(fragment)
    original = load_config(path)
    assert calibrated.context_lengths == [128] and calibrated.search is None
    assert calibrated.depths == original.depths and calibrated.samples == original.samples
    # --output-dir named the search's folder: the fragment's runs go where the config's own output_dir says
    assert calibrated.output_dir == f"{original.output_dir}-{path_part(str(tiny_model_dir))}-passkey"
    assert "written by `evalkit calibrate" in fragment.read_text().splitlines()[0]
    assert main(["validate", str(fragment)]) == 0


def test_a_second_calibrate_resumes_from_the_records_and_runs_nothing(tmp_path, tiny_model_dir, capsys):
    _calibrate(tmp_path, tiny_model_dir, capsys)
    first = (tmp_path / "search" / TRACE_FILE).read_text()
    lines = {p: p.read_text() for p in (tmp_path / "search").rglob("trials.jsonl")}
    _calibrate(tmp_path, tiny_model_dir, capsys)
    assert (tmp_path / "search" / TRACE_FILE).read_text() == first
    assert {p: p.read_text() for p in (tmp_path / "search").rglob("trials.jsonl")} == lines


def test_the_search_block_stays_out_of_the_config_hash(tmp_path, tiny_model_dir):
    plain = load_config(tiny_config(tmp_path, tiny_model_dir))
    searched = load_config(tiny_config(tmp_path, tiny_model_dir, search=SEARCH))
    assert config_hash(plain) == config_hash(searched)


@pytest.mark.parametrize("search, message", [
    ({"low": 512, "high": 256}, "search.high: 256 is not above low (512)"),
    ({"low": 16, "high": 256}, "search.low: 16 tokens is below the shortest prompt"),
    ({"axis": "documents", "low": 1, "high": 5}, "search.axis"),
])
def test_a_bad_search_block_is_one_line_naming_the_field(tmp_path, tiny_model_dir, search, message):
    with pytest.raises(ConfigError, match="cfg.yaml") as err:
        load_config(tiny_config(tmp_path, tiny_model_dir, search=search))
    assert message in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("changes, message", [
    ({}, "search: missing; add a search block"),
    ({"search": {**SEARCH, "budget": 3}}, "search.budget: 3 trials cannot pay for one step"),
    ({"search": {**SEARCH, "axis": "distractor_count", "low": 0, "high": 3}},
     "context_lengths: a distractor_count search runs at one context length"),
    ({"search": SEARCH, "layout": {"answer_prefix": [True, False]}}, "layout: the search runs one layout"),
])
def test_calibrate_refuses_what_it_cannot_search(tmp_path, tiny_model_dir, capsys, changes, message):
    path = tiny_config(tmp_path, tiny_model_dir, **changes)
    assert main(["calibrate", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run-calibrate").exists()  # nothing written before the refusal


def test_the_distractor_axis_varies_the_layout_and_the_fragment_keeps_it(tmp_path, tiny_model_dir, capsys):
    model = {"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 12}
    path = tiny_config(tmp_path, tiny_model_dir, models=[model], tasks=["distractors"], context_lengths=[256],
                       search={**SEARCH, "axis": "distractor_count", "low": 1, "high": 4})
    assert main(["calibrate", str(path), "--output-dir", str(tmp_path / "search")]) == 0
    trace = json.loads((tmp_path / "search" / TRACE_FILE).read_text())[0]
    assert trace["axis"] == "distractor_count" and trace["outcome"]["setting"] == 1
    for step in trace["outcome"]["steps"]:
        run = next((tmp_path / "search").rglob(f"distractor_count-{step['setting']}"))
        assert {r["distractor_count"] for r in records(run)} == {step["setting"]}
        assert {r["context_length"] for r in records(run)} == {256}
    calibrated = load_config(Path(trace["fragment"]))
    assert calibrated.layout.distractor_count == [1] and calibrated.context_lengths == [256]


def test_a_window_config_searches_tokens_and_writes_its_fragment_in_tokens(tmp_path, tiny_model_dir, capsys):
    # the grid's lengths are fractions of the window; a context_length search's settings are tokens
    path = tiny_config(tmp_path, tiny_model_dir, context_unit="window", context_lengths=[0.25], search=SEARCH)
    assert main(["calibrate", str(path), "--output-dir", str(tmp_path / "search")]) == 0
    trace = json.loads((tmp_path / "search" / TRACE_FILE).read_text())
    calibrated = load_config(Path(trace[0]["fragment"]))
    assert (calibrated.context_unit, calibrated.context_lengths) == ("tokens", [128])
    assert main(["plan", str(path), "--tokens-per-s", "1000"]) == 0

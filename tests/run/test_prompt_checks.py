"""Preflight prompt checks: the answer budget is refused when the gold answer cannot fit; truncation is recorded."""

from __future__ import annotations

import json

from run_fixtures import records, tiny_config

from evalkit.cli import main
from evalkit.run.trial_record import is_truncated


def _refused_line(capsys, config) -> str:
    for command in ("validate", "run"):
        assert main([command, str(config)] + (["--quiet"] if command == "run" else [])) == 2
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert "Traceback" not in line
    return line


def test_a_34_token_answer_with_a_12_token_budget_is_refused(capsys, tmp_path, tiny_model_dir):
    # a UUID value is 34 tokens in the SmolLM2 tokenizer; with 12 new tokens no trial could be scored correct
    config = tiny_config(tmp_path, tiny_model_dir, tasks=["kv_retrieval"], context_lengths=[512], samples=1,
                         seed=0, models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                          "max_new_tokens": 12}])
    line = _refused_line(capsys, config)
    assert f"{config}: models[0].max_new_tokens: 12 tokens cannot hold task kv_retrieval's gold answer, " \
           "34 tokens" in line
    assert "plus 1 stop token; set max_new_tokens to at least 35" in line
    assert not (tmp_path / "run").exists()


def test_a_budget_that_holds_the_answer_passes(capsys, tmp_path, tiny_model_dir):
    config = tiny_config(tmp_path, tiny_model_dir, tasks=["kv_retrieval"], context_lengths=[512], samples=1,
                         seed=0, models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                          "max_new_tokens": 35}])
    assert main(["validate", str(config)]) == 0


def test_truncated_generation_is_flagged_in_the_record_and_counted_in_the_report(tmp_path, tiny_model_dir):
    # the random tiny model never says its stop token: every answer runs to the budget
    config = tiny_config(tmp_path, tiny_model_dir, context_lengths=[128], depths=[0.5], samples=2,
                         models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                  "max_new_tokens": 8}])
    assert main(["run", str(config), "--quiet"]) == 0
    recs = records(tmp_path / "run")
    assert [r["extra"]["truncated"] for r in recs] == [True, True]
    report = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "2 of 2 trials were scored wrong after they ran out of max_new_tokens" in report


def test_is_truncated_by_hand():
    assert is_truncated((5, 6, 7), 3, [2]) and not is_truncated((5, 6, 2), 3, [2])  # ended on the stop id
    assert not is_truncated((5, 2), 3, [2]) and not is_truncated((5,), 3, [2])  # stopped early
    json.dumps({"truncated": is_truncated((1,), 1, ())})  # a plain bool, JSON-safe

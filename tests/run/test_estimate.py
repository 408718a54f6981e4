"""evalkit plan (evalkit/run/estimate.py): trial count, prefill with and without reuse, answer budget, time."""

from __future__ import annotations

import pytest

from conftest import write_config
from evalkit.cli import main
from evalkit.config.schema import load_config
from evalkit.run.estimate import estimate_plan


def config(tmp_path, **changes):
    fields = dict(models=[{"name": "m", "max_new_tokens": 4, "reasoning_tokens": 6}], tasks=["passkey"],
                  context_lengths=[1000], depths=[0.0, 0.5, 1.0], samples=2, output_dir=str(tmp_path / "run"))
    return write_config(tmp_path / "cfg.yaml", **{**fields, **changes})


def test_counts_and_reuse(tmp_path):
    path = config(tmp_path)
    result = estimate_plan(load_config(path), path, tokens_per_s=100.0)
    assert result.trials == 6
    assert result.prompt_tokens == 6000
    # per sample group: 1000 (depth 0), 1000 - 0 (reuses nothing before a depth-0 needle), 1000 - 500
    assert result.prompt_tokens_with_reuse == 2 * (1000 + 1000 + 500)
    assert result.answer_tokens == 6 * 10
    assert result.wall_s == pytest.approx((5000 + 60) / 100.0)


def test_no_reuse_prefills_everything(tmp_path):
    path = config(tmp_path, reuse_prefix=False, batch_size=2)
    assert estimate_plan(load_config(path), path).prompt_tokens_with_reuse == 6000


def test_documents_tasks_are_counted_at_their_cap_and_said_to_be_upper_bounds(tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "docs.yaml").write_text(
        "name: docs\ndocuments:\n  source: {format: liu_qa, path: nq-open-oracle-40.jsonl}\n  total: 3\n")
    path = config(tmp_path, tasks=["docs"], task_dirs=["tasks"], data_dir=str(data))
    result = estimate_plan(load_config(path), path, tokens_per_s=100.0)
    assert result.upper_bound_tasks == ("docs",) and result.prompt_tokens == 6000
    assert main(["plan", str(path), "--tokens-per-s", "100"]) == 0
    assert "documents tasks (docs): " in capsys.readouterr().out
    plain = config(tmp_path)
    assert estimate_plan(load_config(plain), plain, tokens_per_s=100.0).upper_bound_tasks == ()


def test_cli_prints_the_plan(tmp_path, capsys):
    path = config(tmp_path)
    assert main(["plan", str(path), "--tokens-per-s", "100"]) == 0
    out = capsys.readouterr().out
    assert "trials: 6" in out and "6,000 without prefix reuse, 5,000 with it (17% saved)" in out
    assert "estimated wall time: 51 s" in out


@pytest.mark.parametrize("rate", ["0", "-3", "nan", "inf", "1e400", "fast"])
def test_plan_refuses_a_rate_that_is_not_a_finite_positive_number_in_one_line(rate, tmp_path, capsys):
    path = config(tmp_path)
    assert main(["plan", str(path), "--tokens-per-s", rate]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.strip().splitlines()
    assert line == (f"error: evalkit plan: argument --tokens-per-s: {rate!r} is not a throughput; "
                    "give a positive number of tokens per second; see evalkit plan --help")
    assert "wall time" not in captured.out


def test_without_a_throughput_plan_times_calibration_forwards_on_the_model(tmp_path, tiny_model_dir, capsys):
    from evalkit.run.calibrate import measure_throughput

    path = config(tmp_path, models=[{"name": str(tiny_model_dir), "max_new_tokens": 4}], context_lengths=[200])
    result = estimate_plan(load_config(path), path, measure=True)
    (name, speed), = result.measured
    assert name == str(tiny_model_dir) and speed.prompt_tokens == 200
    assert speed.prefill_tokens_per_s > 0 and speed.decode_tokens_per_s > 0
    # the estimate is built from the measured speeds: prefill at one, answers at the other
    expected = (result.prompt_tokens_with_reuse / speed.prefill_tokens_per_s
                + result.answer_tokens / speed.decode_tokens_per_s)
    assert result.wall_s == pytest.approx(expected)
    again = measure_throughput(load_config(path).models[0], prompt_tokens=64, decode_tokens=8, rounds=1)
    assert again.prompt_tokens == 64 and again.decode_tokens_per_s > 0
    assert main(["plan", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"measured {tiny_model_dir}: prefill " in out and "tokens/s (calibration forwards on 200-token prompts)" in out
    assert "estimated wall time: " in out and "give --tokens-per-s" not in out


def test_first_passes_of_attention_sort_and_calibration_are_counted(tmp_path, capsys):
    from pathlib import Path

    data = Path(__file__).parents[1] / "tasks" / "data" / "lost_in_the_middle"
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "docs.yaml").write_text(
        "name: docs\ndocuments:\n  source: {format: liu_qa, path: nq-open-oracle-40.jsonl}\n  total: 3\n")
    arms = ["none", "attention_sort", "calibrate_attention"]
    path = config(tmp_path, tasks=["docs"], task_dirs=["tasks"], data_dir=str(data), controls=["closed_book"],
                  mitigations=arms, attention={"capture": True})
    result = estimate_plan(load_config(path), path, tokens_per_s=100.0)
    # 2 samples x (3 depths + closed book) x 3 arms; first passes: 2 samples x 3 depths for each of the two arms
    assert result.trials == 24 and result.first_passes == 12
    assert result.prompt_tokens == 24 * 1000 + 12 * 1000
    assert result.answer_tokens == 24 * 10 + 6 * 10 + 6 * 1  # attention_sort answers its first pass, the probe 1
    assert main(["plan", str(path), "--tokens-per-s", "100"]) == 0
    assert "first passes (attention_sort, calibrate_attention): 12 more prompts" in capsys.readouterr().out


def test_a_search_block_is_costed_at_its_budget_and_hardest_setting(tmp_path, capsys):
    search = {"axis": "context_length", "low": 256, "high": 2048, "budget": 50}
    path = config(tmp_path, search=search)
    result = estimate_plan(load_config(path), path, tokens_per_s=100.0)
    assert result.trials == 6  # the grid itself is unchanged
    assert (result.search_trials, result.search_prompt_tokens) == (50, 50 * 2048)
    assert result.search_wall_s == pytest.approx((50 * 2048 + 50 * 10) / 100.0)
    assert main(["plan", str(path), "--tokens-per-s", "100"]) == 0
    assert "evalkit calibrate (search block), at most: 50 trials, 102,400 prompt tokens" in capsys.readouterr().out
    looks = config(tmp_path, search={**search, "axis": "distractor_count", "low": 0, "high": 8})
    assert estimate_plan(load_config(looks), looks, tokens_per_s=100.0).search_prompt_tokens == 50 * 1000
    assert estimate_plan(load_config(config(tmp_path)), path).search_trials == 0

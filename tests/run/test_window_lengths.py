"""``context_unit: window``: lengths as fractions of each model's window, resolved per model, recorded, refused
where they cannot run (``evalkit/config/context_lengths.py``, ``run/preflight.py``, ``run/plan.py``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from run_fixtures import records, tiny_config
from evalkit.cli import main
from evalkit.config.resolved_lengths import token_lengths, window_lengths
from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.errors import ConfigError
from evalkit.run.estimate import estimate_plan
from evalkit.run.plan import expand
from evalkit.run.preflight import model_limits
from evalkit.run.runner import run_eval
from evalkit.store.format import read_header
from evalkit.tasks import load_task


@pytest.fixture(scope="module")
def two_windows(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny model twice, with windows of 1,024 and 512 tokens (max_position_embeddings)."""
    folders = []
    for window in (1024, 512):
        folder = tmp_path_factory.mktemp(f"tiny-{window}")
        shutil.copytree(tiny_model_dir, folder, dirs_exist_ok=True)
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, "max_position_embeddings": window}))
        folders.append(folder)
    return folders[0], folders[1]


def _entry(folder: Path, **changes) -> dict:
    return {"name": str(folder), "dtype": "float32", "device": "cpu", "max_new_tokens": 8, **changes}


def _window_config(tmp_path: Path, *folders: Path, **changes) -> Path:
    fields = dict(models=[_entry(f) for f in folders], context_unit="window", context_lengths=[0.25, 0.5],
                  depths=[0.5], samples=1)
    return tiny_config(tmp_path, folders[0], **{**fields, **changes})


def _error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


# ---------------------------------------------------------------- resolved per model, recorded, resumed


def test_models_with_different_windows_run_their_own_tokens_and_records_carry_tokens_and_fraction(
        tmp_path, two_windows, single_thread):
    path = _window_config(tmp_path, *two_windows)
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    rows = records(summary.run_dir)
    cells = {(Path(r["model"]).name, r["context_length"], r["context_fraction"]) for r in rows}
    big, small = two_windows[0].name, two_windows[1].name
    assert cells == {(big, 256, 0.25), (big, 512, 0.5), (small, 128, 0.25), (small, 256, 0.5)}
    assert all(r["prompt_tokens"] == r["context_length"] for r in rows)
    assert len({r["trial_id"] for r in rows}) == len(rows) == 4
    header = read_header(summary.run_dir)
    assert header["config"]["context_lengths"] == [0.25, 0.5]  # the config as written
    assert header["resolved_lengths"][str(two_windows[1])] == {"window": 512, "tokens": [128, 256]}
    again = run_eval(load_config(path), path, quiet=True, write_report=False)  # the header's plan takes them back
    assert (again.already_done, again.ran) == (4, 0)


def test_context_window_wins_over_the_models_config(tmp_path, two_windows):
    path = _window_config(tmp_path, two_windows[0], models=[_entry(two_windows[0], context_window=2048)])
    lengths = model_limits(load_config(path), path).lengths
    assert lengths.tokens(str(two_windows[0])) == (512, 1024)
    assert lengths.of(str(two_windows[0]))[0].fraction == 0.25


# ---------------------------------------------------------------- refused before anything is written


def test_a_fraction_above_one_is_refused_at_load(tmp_path, two_windows):
    path = _window_config(tmp_path, two_windows[0], context_lengths=[0.5, 1.2])
    with pytest.raises(ConfigError, match=r"context_lengths\[1\]: 1\.2 is not a fraction of the window in \(0, 1\]"):
        load_config(path)


def test_a_fraction_whose_answer_budget_leaves_the_window_is_refused_naming_the_largest_that_fits(
        tmp_path, two_windows, capsys):
    path = _window_config(tmp_path, *two_windows, context_lengths=[0.5, 0.99])
    err = _error(capsys, ["run", str(path), "--quiet"])
    # 0.99 of 512 is 506 tokens; with 8 answer tokens that is 514 > 512: (512 - 8) / 512 = 0.984
    assert f"context_lengths: 0.99 of {two_windows[1]}'s 512-token window is 506 tokens" in err
    assert "use fractions up to 0.984 for" in err
    assert not (tmp_path / "run").exists()
    # the reasoning budget counts too
    reasoning = [_entry(two_windows[1], reasoning_tokens=100)]
    err = _error(capsys, ["validate", str(_window_config(tmp_path, two_windows[1], models=reasoning,
                                                         context_lengths=[0.9]))])
    assert "answer budget of 108" in err and "use fractions up to 0.789" in err


def test_a_model_without_a_window_needs_context_window(tmp_path):
    cfg = EvalConfig.model_validate(dict(models=["served-model"], tasks=["passkey"], context_unit="window",
                                         context_lengths=[0.5], depths=[0.5], samples=1, output_dir="x"))
    with pytest.raises(ConfigError, match=r"cfg.yaml: models\[0\]\.context_window: context_unit: window needs "
                                          r"served-model's maximum context and its config does not say it"):
        window_lengths(cfg, {"served-model": None}, "cfg.yaml")
    given = cfg.model_copy(update={"models": [cfg.models[0].model_copy(update={"context_window": 8192})]})
    assert window_lengths(given, {"served-model": None}, "cfg.yaml").tokens("served-model") == (4096,)


def test_a_fraction_below_the_smallest_prompt_is_refused_like_a_short_token_length(tmp_path, two_windows, capsys):
    # 0.07 of 512 is 35 tokens: above evalkit's minimum of 32, too short for the passkey prompt's fixed parts
    tokens_err = _error(capsys, ["validate", str(tiny_config(tmp_path, two_windows[1], context_lengths=[35]))])
    window_err = _error(capsys, ["validate", str(_window_config(tmp_path, two_windows[1], context_lengths=[0.07]))])
    assert "context_lengths: " in window_err
    assert window_err == tokens_err
    err = _error(capsys, ["validate", str(_window_config(tmp_path, two_windows[1], context_lengths=[0.05]))])
    assert "0.05 of" in err and "is 25 tokens, below evalkit's minimum of 32; use a fraction of at least 0.063" in err


def test_two_fractions_that_come_to_the_same_tokens_are_refused():
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=["passkey"], context_unit="window",
                                         context_lengths=[0.5, 0.5001], depths=[0.5], samples=1, output_dir="x"))
    with pytest.raises(ConfigError, match="0.5 and 0.5001 both come to 512 tokens of m's 1,024-token window"):
        window_lengths(cfg, {"m": 1024}, "cfg.yaml")


# ---------------------------------------------------------------- planning


def _grid(**changes) -> EvalConfig:
    return EvalConfig.model_validate({**dict(models=["a", "b"], tasks=["passkey"], context_unit="window",
                                             context_lengths=[0.25, 0.5], depths=[0.0, 1.0], samples=2,
                                             output_dir="x"), **changes})


def test_plan_gives_each_model_its_tokens_with_stable_distinct_ids_and_controls_at_its_own_lengths():
    cfg = _grid(controls=["closed_book", "oracle"], values="per_trial")
    lengths = window_lengths(cfg, {"a": 4096, "b": 1024}, "cfg.yaml")
    trials = expand(cfg, {"passkey": load_task("passkey")}, lengths=lengths)
    by_model = {m: {(t.context_length, t.context_fraction) for t in trials if t.model == m} for m in ("a", "b")}
    assert by_model == {"a": {(1024, 0.25), (2048, 0.5)}, "b": {(256, 0.25), (512, 0.5)}}
    oracles = {t.model: t.context_length for t in trials if t.control == "oracle"}
    assert oracles == {"a": 2048, "b": 512}  # each model's largest length
    assert len({t.trial_id for t in trials}) == len(trials)
    assert [t.trial_id for t in trials] == [t.trial_id for t in expand(cfg, {"passkey": load_task("passkey")},
                                                                        lengths=lengths)]
    # per_trial: a cell is (fraction, depth), so the models still share each cell's needle value
    seeds = {m: [t.seed for t in trials if t.model == m] for m in ("a", "b")}
    assert seeds["a"] == seeds["b"] and len(set(seeds["a"])) > 2
    with pytest.raises(ConfigError, match="context_unit: window"):
        expand(cfg, {"passkey": load_task("passkey")})  # fractions need the windows


def test_a_token_config_plans_and_hashes_as_before():
    plain = EvalConfig.model_validate(dict(models=["a"], tasks=["passkey"], context_lengths=[128, 256],
                                           depths=[0.5], samples=1, output_dir="x"))
    assert config_hash(plain) == "b5ea272131516fb8"  # its hash before context_unit existed: old runs resume
    trials = expand(plain, {"passkey": load_task("passkey")}, lengths=token_lengths(plain))
    assert {t.context_fraction for t in trials} == {None}
    assert config_hash(_grid()) != config_hash(_grid(context_unit="tokens", context_lengths=[256, 512]))


def test_plan_and_validate_work_on_a_window_config(tmp_path, two_windows, capsys):
    path = _window_config(tmp_path, *two_windows)
    estimate = estimate_plan(load_config(path), path)
    assert estimate.trials == 4 and estimate.prompt_tokens == 256 + 512 + 128 + 256
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert "ok (2 models x 1 tasks, 4 trials)" in out
    assert f"{two_windows[1]}: context lengths 128, 256 tokens (512-token window)" in out

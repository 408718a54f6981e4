"""Controls: closed-book, oracle and dummy-needle trials in the plan, their prompts, records and report rates."""

from __future__ import annotations

import math

import pytest

from conftest import write_config
from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.config.trial_ids import trial_id, trial_variant
from evalkit.prompt.controls import build_trial_prompt, dummy_sentence, record_axes
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.prompt.builder import PromptBuilder
from evalkit.tasks import haystack_for_task, load_task
from evalkit.types import REGION_NAMES

REPO_CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"


def _config(**changes) -> EvalConfig:
    fields = dict(models=["m"], tasks=["passkey"], context_lengths=[128, 256], depths=[0.0, 0.5, 1.0], samples=2,
                  output_dir="out")
    return EvalConfig.model_validate({**fields, **changes})


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)


def test_old_configs_keep_their_hash_and_trial_ids():
    # pinned before controls and layouts existed: resume of older runs depends on these (trial ids also
    # carry the task file's content hash, so editing tasks/passkey.yaml changes them by design)
    cfg = load_config(REPO_CONFIGS / "quickstart.yaml")
    trials = expand(cfg, {"passkey": load_task("passkey")})
    assert config_hash(cfg) == "b0b8332f6d02b9e5"
    assert (trials[0].trial_id, trials[-1].trial_id) == ("fffbd877b97fd72c", "aa9db55a4730143f")
    assert all(t.control == "" and t.layout == () for t in trials)


def test_controls_add_trials_without_renaming_placement_trials():
    tasks = {"passkey": load_task("passkey")}
    plain = expand(_config(), tasks)
    with_controls = expand(_config(controls=["closed_book", "oracle", "dummy_needle"]), tasks)
    assert [t for t in with_controls if not t.control] == plain
    assert config_hash(_config()) != config_hash(_config(controls=["oracle"]))
    kinds = [t.control for t in with_controls if t.control]
    # per sample: closed book per length, oracle once, dummy per length x depth
    assert kinds.count("closed_book") == 2 * 2 and kinds.count("oracle") == 2 and kinds.count("dummy_needle") == 2 * 6
    assert len({t.trial_id for t in with_controls}) == len(with_controls)
    closed = [t for t in with_controls if t.control == "closed_book"]
    assert all(math.isnan(t.depth) for t in closed)
    # the oracle (one prompt for every length) sits in the grid's largest length, so grouping by length keeps it
    # beside the placement trials; its id has no length, so runs from before keep their oracle ids
    oracles = [t for t in with_controls if t.control == "oracle"]
    assert all(t.context_length == 256 for t in oracles)
    task = tasks["passkey"]
    assert [t.trial_id for t in oracles] == [
        trial_id(model="m", revision="", task="passkey", task_hash=task.content_hash(), context_length=0, depth=None,
                 sample=t.sample, config_seed=0, variant=trial_variant("oracle", (), None))
        for t in oracles]
    with pytest.raises(ValueError, match="appears twice"):
        _config(controls=["oracle", "oracle"])


@pytest.fixture(scope="module")
def passkey_task():
    spec = load_task("passkey")
    return PreparedTask(spec, haystack_for_task(spec))


def _trial(cfg, control, length=256, depth=0.5):
    trials = expand(cfg, {"passkey": load_task("passkey")})
    return next(t for t in trials if t.control == control and t.sample == 0 and t.context_length == length
                and (math.isnan(t.depth) or t.depth == depth))


def test_closed_book_has_no_needle_and_oracle_has_no_haystack(smollm2_tokenizer, passkey_task):
    cfg = _config(controls=["closed_book", "oracle"])
    builder = PromptBuilder(smollm2_tokenizer)
    model = cfg.models[0]
    placed = build_trial_prompt(builder, passkey_task, _trial(cfg, ""), model, cfg)
    closed = build_trial_prompt(builder, passkey_task, _trial(cfg, "closed_book"), model, cfg)
    oracle = build_trial_prompt(builder, passkey_task, _trial(cfg, "oracle", length=256), model, cfg)
    value = placed.needle.value
    assert value in _decode(smollm2_tokenizer, placed.prompt.input_ids)
    assert value not in _decode(smollm2_tokenizer, closed.prompt.input_ids)
    assert closed.prompt.prompt_tokens == 256 and closed.prompt.regions["needle"].length == 0
    assert closed.extra == {"filler_tokens": closed.prompt.filler_tokens}  # the control kind is a record field
    assert record_axes(_trial(cfg, "closed_book"))["control"] == "closed_book"
    assert closed.prompt.filler_tokens > 0  # the record says how much content-free filler makes the exact length
    spans = [closed.prompt.regions[name] for name in REGION_NAMES]
    assert all(a.token_end == b.token_start for a, b in zip(spans, spans[1:]))
    # oracle: the fixed parts of the placement prompt and the needle, nothing else
    ids, regions = oracle.prompt.input_ids, oracle.prompt.regions
    assert regions["context_before"].length == regions["context_after"].length == 0
    head, tail = placed.prompt.regions["preamble"], placed.prompt.regions["question"]
    needle = placed.prompt.regions["needle"]
    expected = (placed.prompt.input_ids[: head.token_end] + placed.prompt.input_ids[needle.token_start : needle.token_end]
                + placed.prompt.input_ids[tail.token_start :])
    assert ids == expected


def test_dummy_needle_has_the_needles_length_and_place(smollm2_tokenizer, passkey_task):
    cfg = _config(controls=["dummy_needle"])
    builder = PromptBuilder(smollm2_tokenizer)
    for depth in (0.0, 0.5, 1.0):
        placed = build_trial_prompt(builder, passkey_task, _trial(cfg, "", depth=depth), cfg.models[0], cfg)
        dummy = build_trial_prompt(builder, passkey_task, _trial(cfg, "dummy_needle", depth=depth), cfg.models[0], cfg)
        assert dummy.prompt.regions == placed.prompt.regions
        span = dummy.prompt.regions["needle"]
        a, b = placed.prompt.input_ids, dummy.prompt.input_ids
        assert a[: span.token_start] == b[: span.token_start] and a[span.token_end :] == b[span.token_end :]
        text = _decode(smollm2_tokenizer, b[span.token_start : span.token_end]).strip()
        assert text == dummy.extra["dummy"] and not any(ch.isdigit() for ch in text)
    assert len(builder.fragment_ids(dummy_sentence(builder, 3))) == 3


def test_run_records_controls_and_report_shows_their_rates(tmp_path, tiny_model_dir):
    from evalkit.report.analysis.compare import control_rates
    from evalkit.report.data.load import load_results
    from evalkit.run.runner import run_eval

    path = write_config(
        tmp_path / "c.yaml", models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                      "max_new_tokens": 8}],
        tasks=["passkey"], context_lengths=[128], depths=[0.0, 1.0], samples=1, output_dir=str(tmp_path / "run"),
        controls=["closed_book", "oracle", "dummy_needle"])
    summary = run_eval(load_config(path), path, quiet=True)
    df = load_results(summary.run_dir)
    assert summary.ran == 2 + 1 + 1 + 2
    controls = list(df["control"])
    assert all("control" not in e for e in df["extra"])  # the control kind is a typed column
    assert sorted(controls) == ["", "", "closed_book", "dummy_needle", "dummy_needle", "oracle"]
    # every control carries its cell's length (the oracle's was 0), and its own token count in prompt_tokens
    assert df["context_length"].tolist() == [128] * 6
    oracle = df[df["control"] == "oracle"].iloc[0]
    assert 0 < oracle["prompt_tokens"] < 128
    rates = control_rates(df)
    assert set(rates["control"]) == {"closed_book", "oracle", "dummy_needle"}
    assert (rates["n"] > 0).all()
    report = (summary.report_dir / "report.md").read_text()
    assert "## Controls" in report and "closed_book" in report

"""Thinking models: the reasoning block is cut before scoring (raw text kept), its own token budget, and
chat_template_kwargs reaching the template."""

from __future__ import annotations

import copy

import pytest

from conftest import write_config
from evalkit.config.schema import ModelConfig, load_config
from evalkit.errors import ConfigError
from evalkit.prompt.tokenization import frame_text
from evalkit.run.trial_record import strip_reasoning
from evalkit.types import PromptParts

PATTERN = r"(?s)<think>.*?(</think>|$)"


def test_reasoning_is_cut_before_scoring_and_the_scored_text_recorded():
    assert strip_reasoning("<think>it is 7? no, 12345</think> The key is 12345.", PATTERN) == (
        "The key is 12345.", {"scored_answer": "The key is 12345."})
    # a block cut off by the budget: nothing of it is scored
    assert strip_reasoning("<think>maybe 12345", PATTERN) == ("", {"scored_answer": ""})
    assert strip_reasoning("<think>x</think> 1", None) == ("<think>x</think> 1", {})


def test_a_bad_pattern_is_refused_at_load(tmp_path):
    path = write_config(tmp_path / "c.yaml", models=[{"name": "m", "think_pattern": "<think>(.*"}], tasks=["passkey"],
                        context_lengths=[128], depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"c.yaml: models\[0\].think_pattern: '<think>\(\.\*' is not a regular expression"):
        load_config(path)


def test_chat_template_kwargs_reach_the_template(smollm2_tokenizer):
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = ("{% for m in messages %}{{ m['content'] }}{% endfor %}"
                               "{% if enable_thinking is defined and not enable_thinking %}/no_think{% endif %}")
    parts = PromptParts(instructions="Read.", needle="n", question="Q?", answer_prefix="", system_prompt=None,
                        use_chat_template=True)
    assert "/no_think" not in frame_text(tokenizer, parts, False).tail_text
    off = PromptParts(**{**parts.__dict__, "chat_template_kwargs": (("enable_thinking", False),)})
    assert frame_text(tokenizer, off, False).tail_text.endswith("/no_think")


def test_thinking_settings_at_default_keep_the_hash():
    from evalkit.config.schema import EvalConfig, config_hash

    base = dict(tasks=["passkey"], context_lengths=[128], depths=[0.5], samples=1, output_dir="x")
    plain = config_hash(EvalConfig.model_validate({**base, "models": [{"name": "m"}]}))
    spelled = {"name": "m", "think_pattern": None, "reasoning_tokens": 0, "chat_template_kwargs": {}}
    assert config_hash(EvalConfig.model_validate({**base, "models": [spelled]})) == plain
    changed = {"name": "m", "chat_template_kwargs": {"enable_thinking": False}}
    assert config_hash(EvalConfig.model_validate({**base, "models": [changed]})) != plain
    assert ModelConfig(name="m", reasoning_tokens=64).reasoning_tokens == 64


def test_served_run_gets_the_reasoning_budget_and_scores_the_cut_answer(tmp_path, tiny_model_dir, smollm2_tokenizer):
    from evalkit.run.runner import run_eval
    from run_fixtures import records
    from served_fixtures import FakeServer, Script, answer_requests

    server = FakeServer(Script(smollm2_tokenizer, answer="<think>is it 1?</think> 12345"))
    try:
        entry = {"name": "served-smol", "backend": "served", "max_new_tokens": 8, "reasoning_tokens": 30,
                 "think_pattern": PATTERN, "served": {"base_url": server.url, "tokenizer": str(tiny_model_dir)}}
        path = write_config(tmp_path / "cfg.yaml", models=[entry], tasks=["passkey"], context_lengths=[128],
                            depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))
        (row,) = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    finally:
        server.close()
    assert {body["n_predict"] for body in answer_requests(server.script.requests)} == {38}  # 8 + 30 reasoning tokens
    assert row["generated"] == "<think>is it 1?</think> 12345"  # the raw answer stays in the record
    assert row["extra"]["scored_answer"] == "12345"

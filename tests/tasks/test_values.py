"""A files or dataset haystack never holds a value of the needle's kind: such sentences are left out, counted."""

from __future__ import annotations

import re

import pytest
import yaml

from evalkit.config.schema import EvalConfig
from evalkit.errors import HaystackError
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.run.plan import expand
from evalkit.run.preflight import PreparedTask
from evalkit.tasks import BUILTIN_TASKS_DIR, haystack_for_task, load_task
from evalkit.tasks.spec import TaskSpec
from evalkit.tasks.values import value_kind_pattern

ESSAY = ("Lessons learned\n\nThe pace kept accelerating.We shipped anyway. Here is number four! 1. Release Early. "
         "Nobody minded the delay.\n\nThe team met on a quiet morning. They talked about what to build next. " * 12)


def _files_task(tmp_path, base: str, text: str) -> TaskSpec:
    (tmp_path / "essays").mkdir()
    (tmp_path / "essays" / "pg.txt").write_text(text)
    spec = yaml.safe_load((BUILTIN_TASKS_DIR / f"{base}.yaml").read_text())
    spec.update(name="essay_task", haystack={"source": "files", "path": "essays/*.txt"})
    (tmp_path / "essay_task.yaml").write_text(yaml.safe_dump(spec))
    return load_task(tmp_path / "essay_task.yaml")


def test_digit_sentences_of_a_files_haystack_are_left_out_for_a_pass_key(tmp_path, smollm2_tokenizer):
    task = _files_task(tmp_path, "passkey", ESSAY)
    haystack = haystack_for_task(task)
    assert haystack.dropped_sentences == 12  # "1." once per copy of the essay
    assert not any(re.search(r"\d", s) for s in haystack.units)
    assert "The pace kept accelerating." in haystack.units and "We shipped anyway." in haystack.units
    assert "Lessons learned" in haystack.units  # a heading is its own unit, no period added
    cfg = EvalConfig.model_validate(dict(models=["m"], tasks=[str(tmp_path / "essay_task.yaml")],
                                         context_lengths=[300, 700], depths=[0.0, 0.5, 1.0], samples=2,
                                         output_dir="o"))
    builder, prepared = PromptBuilder(smollm2_tokenizer), PreparedTask(task, haystack)
    for trial in expand(cfg, {"essay_task": task}):
        built = build_trial_prompt(builder, prepared, trial, cfg.models[0], cfg)
        regions, ids = built.prompt.regions, built.prompt.input_ids
        for region in ("context_before", "context_after"):
            text = smollm2_tokenizer.decode(list(ids[regions[region].token_start:regions[region].token_end]))
            assert not re.search(r"\d", text), (trial, text)
        assert built.extra["haystack_sentences_dropped"] == 12  # the record states the count


def test_a_files_haystack_made_of_values_is_refused_at_load(tmp_path):
    with pytest.raises(HaystackError, match=r"pg\.txt: 3 of 3 sentences hold digits"):
        _files_task(tmp_path, "passkey", "It cost 5 dollars. Then 7. And 9 more.")


def test_value_kinds():
    pattern, _ = value_kind_pattern(load_task("passkey_word"))
    assert pattern.search("A Lantern stood there.") and not pattern.search("Plantern grew.")
    assert value_kind_pattern(load_task("kv_retrieval"))[0].search('id 29868a4c-8bef-4103-8de0-ed83f026028d')
    assert value_kind_pattern(load_task("fact"))[0].search("add the Saffron")
    assert value_kind_pattern(load_task("doc_qa")) is None

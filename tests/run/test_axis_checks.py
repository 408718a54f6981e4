"""The content axes checked against the config's tasks before anything runs: an unknown needle variant, a
variant asked of a task without variants, a shuffled documents task; and the needle-length check covering the
variants."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import write_config
from evalkit.config.schema import load_config
from evalkit.errors import ConfigError
from evalkit.run.preflight import prepare_tasks

TASK = """\
name: graded
needle: "The code of the archive is {value}."
needle_variants:
  high: "The code of the archive is {value}."
  low: "Type {value} on the keypad by the vault door, and it opens for anyone who asks politely enough."
value: {kind: integer, digits: 5}
question: "What is the code of the archive?"
"""


def _config(tmp_path, tasks=("graded.yaml",), **layout):
    (tmp_path / "graded.yaml").write_text(TASK)
    path = write_config(tmp_path / "c.yaml", models=["m"], tasks=list(tasks), context_lengths=[256], depths=[0.5],
                        samples=1, output_dir=str(tmp_path / "run"), layout=layout)
    return load_config(path), path


def test_unknown_needle_variant_is_refused_naming_the_field_and_the_tasks_variants(tmp_path):
    config, path = _config(tmp_path, needle_variant=["high", "middle"])
    with pytest.raises(ConfigError) as err:
        prepare_tasks(config, path)
    message = str(err.value)
    assert "\n" not in message and "layout.needle_variant: 'middle'" in message
    assert "task graded (tasks[0])" in message and "use one of high, low" in message


def test_variant_asked_of_a_task_without_variants_is_refused(tmp_path):
    config, path = _config(tmp_path, tasks=("graded.yaml", "passkey"), needle_variant=["low"])
    with pytest.raises(ConfigError, match=r"layout.needle_variant: 'low', but task passkey \(tasks\[1\]\) has no "
                                          r"needle_variants"):
        prepare_tasks(config, path)
    config, path = _config(tmp_path, tasks=("graded.yaml", "passkey"), needle_variant=[None, "low"])
    with pytest.raises(ConfigError, match="passkey"):
        prepare_tasks(config, path)
    config, path = _config(tmp_path, tasks=("graded.yaml", "passkey"), needle_variant=[None])
    assert set(prepare_tasks(config, path)) == {"graded", "passkey"}


def test_shuffled_documents_task_is_refused(tmp_path):
    config, path = _config(tmp_path, tasks=("lost_in_the_middle_qa",), haystack_order=["coherent", "shuffled"])
    with pytest.raises(ConfigError, match="layout.haystack_order: shuffled .* lost_in_the_middle_qa .* documents task"):
        prepare_tasks(config, path)


def test_validate_prints_the_refusal_in_one_line(tmp_path):
    _, path = _config(tmp_path, needle_variant=["medium"])
    result = subprocess.run([sys.executable, "-m", "evalkit", "validate", str(path)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "c.yaml: layout.needle_variant: 'medium'" in line and "high, low" in line


def test_longest_needle_check_counts_the_variants(tmp_path, smollm2_tokenizer, monkeypatch):
    from evalkit.prompt.builder import PromptBuilder
    from evalkit.run import prompt_checks

    config, path = _config(tmp_path, needle_variant=["high", "low"])
    tasks = prepare_tasks(config, path)
    sizes = prompt_checks._measure_samples(PromptBuilder(smollm2_tokenizer), config, path, tasks["graded"],
                                           config.models[0], "")
    assert sizes.longest_needle_parts.needle.startswith("Type ")  # the low variant is the longest wording

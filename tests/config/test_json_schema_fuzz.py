"""The schemas against the validators on fuzzed documents: the mutations test_fuzz_inputs.py draws (one field of a
valid config, model entry or task file set to a value of any YAML kind), valid or not.

The schema never refuses what the validator accepts (an editor must not underline a working file), and what
only the validator refuses falls in one of the classes ``beyond_the_schema`` names, with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.tasks.spec import TaskSpec
from test_fuzz_inputs import ANY_VALUE, BASE_TASK, base_config, field_key

REPO = Path(__file__).resolve().parents[2]
VALIDATORS = {kind: jsonschema.Draft202012Validator(json.loads((REPO / f"docs/schema/{kind}.schema.json").read_text()))
              for kind in ("config", "task")}
BASE = {**base_config("smollm2-135m-instruct"), "tasks": ["passkey"], "output_dir": "reports/runs/fuzz"}
TEMPLATES = {"needle", "question", "answer"}


def _integral_float(value: object) -> bool:
    if isinstance(value, list):
        return any(_integral_float(item) for item in value)
    return isinstance(value, float) and value.is_integer()


def beyond_the_schema(where: str, key: str, value: object) -> str | None:
    """Why the schema cannot refuse this mutation, or None when it should."""
    if _integral_float(value):
        return "JSON has one number type: 8.0 is the integer 8 to a JSON Schema (YAML and pydantic tell them apart)"
    if where == "config" and key == "batch_size" and isinstance(value, int) and value > 1:
        return "cross-field: batch_size above 1 needs reuse_prefix: false"
    if where == "task" and key in ("needle", "value", "question") and value is None:
        return "cross-field: needle, value and question are required unless generator: or documents: is given"
    if where == "task" and key in TEMPLATES and isinstance(value, str):
        return "a template's fields and format specs (parsed by the validator)"
    if where == "task" and key == "distractors" and isinstance(value, dict):
        return "cross-field: a look-alike kind needs what the needle carries (other_key: a {key} in the needle)"
    if where == "model" and key == "init_seed" and isinstance(value, int) and not isinstance(value, bool):
        return "cross-field: init_seed needs init: random"
    if where == "model" and key == "think_pattern" and isinstance(value, str):
        return "a regular expression that must compile"
    return None


def _accepted(model: type[BaseModel], document: dict) -> bool:
    try:
        model.model_validate(document)
    except ValidationError:
        return False
    return True


@st.composite
def mutation(draw) -> tuple[str, str, object, dict]:
    """(where, key, value, document): one field of the config, its model entry or the task set to ``value``."""
    where = draw(st.sampled_from(["config", "model", "task"]))
    schema = {"config": EvalConfig, "model": ModelConfig, "task": TaskSpec}[where]
    key, value = draw(field_key(schema)), draw(ANY_VALUE)
    if where == "config":
        return where, key, value, {**BASE, key: value}
    if where == "model":
        return where, key, value, {**BASE, "models": [{**BASE["models"][0], key: value}]}
    return where, key, value, {**BASE_TASK, key: value}


@settings(max_examples=600, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutation())
def test_schema_and_validator_agree_on_fuzzed_documents(case):
    where, key, value, document = case
    kind, model = ("task", TaskSpec) if where == "task" else ("config", EvalConfig)
    by_validator, by_schema = _accepted(model, document), VALIDATORS[kind].is_valid(document)
    if by_validator:
        errors = [error.message for error in VALIDATORS[kind].iter_errors(document)]
        assert by_schema, f"{where}.{key} = {value!r}: the validator accepts it, the schema refuses it: {errors}"
    elif by_schema:
        assert beyond_the_schema(where, key, value), f"{where}.{key} = {value!r}: only the validator refuses it"


def test_the_base_documents_are_valid_for_both():
    assert _accepted(EvalConfig, BASE) and VALIDATORS["config"].is_valid(BASE)
    assert _accepted(TaskSpec, BASE_TASK) and VALIDATORS["task"].is_valid(BASE_TASK)


def test_a_mapping_key_outside_its_pattern_is_refused_by_both():
    # found by a random draw: pydantic's patternProperties left a key outside the pattern (and its value) free
    for variants in ({"": 0}, {"": "One {value}."}, {"bad name": "One {value}."}):
        document = {**BASE_TASK, "needle_variants": variants}
        assert not _accepted(TaskSpec, document) and not VALIDATORS["task"].is_valid(document)
    good = {**BASE_TASK, "needle_variants": {"plain": "One {value}."}}
    assert _accepted(TaskSpec, good) and VALIDATORS["task"].is_valid(good)

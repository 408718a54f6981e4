"""The JSON Schemas of config and task files (``evalkit schema``): committed, current, and in agreement with the
validators on every committed file, on the tables of bad configs the other tests hold, and on valid configs.

A case the validator refuses is either refused by the schema too, or listed in ``BEFORE_THE_SCHEMA`` (no document
reaches a schema: YAML syntax, ``--set`` syntax, what the path is) or ``BEYOND_THE_SCHEMA`` (the document has the
right shape; what refuses it is a rule across fields, the file system, the machine or a template's parse), with
the reason. A listed case the schema does refuse fails the test: the list stays exact.
"""

from __future__ import annotations

import json
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel

from evalkit.cli import main
from evalkit.config.schema import EvalConfig, load_config, read_raw_config
from evalkit.config.yaml_io import read_yaml_mapping
from evalkit.errors import ConfigError, TaskError
from evalkit.tasks.registry import load_task_file
from evalkit.tasks.spec import TaskSpec
from test_config import BAD, BAD_ATTENTION, GOOD, changed, write
from test_hostile_inputs import ROWS

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = {"config": (EvalConfig, REPO / "docs" / "schema" / "config.schema.json"),
           "task": (TaskSpec, REPO / "docs" / "schema" / "task.schema.json")}
COMMITTED = [("config", path) for path in sorted((REPO / "configs").glob("*.yaml"))] + \
            [("task", path) for path in sorted((REPO / "tasks").glob("*.yaml"))]


def validator(kind: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMAS[kind][1].read_text()))


def schema_accepts(kind: str, document: object) -> bool:
    return validator(kind).is_valid(document)


# ---------------------------------------------------------------- committed, current, well formed


@pytest.mark.parametrize("kind", SCHEMAS)
def test_the_committed_schema_is_what_evalkit_schema_writes(kind, tmp_path, capsys):
    out = tmp_path / f"{kind}.schema.json"
    assert main(["schema", kind, "--out", str(out)]) == 0
    committed = SCHEMAS[kind][1]
    regenerate = f"evalkit schema {kind} --out {committed.relative_to(REPO)}"
    assert out.read_bytes() == committed.read_bytes(), \
        f"{committed.relative_to(REPO)} is out of date with the pydantic models; regenerate it: {regenerate}"
    capsys.readouterr()
    assert main(["schema", kind]) == 0  # printed, the same text
    assert capsys.readouterr().out == committed.read_text(encoding="utf-8")


@pytest.mark.parametrize("kind", SCHEMAS)
def test_the_committed_reference_page_is_what_evalkit_schema_writes(kind, tmp_path):
    out = tmp_path / f"{kind}.md"
    assert main(["schema", kind, "--format", "markdown", "--out", str(out)]) == 0
    committed = REPO / "docs" / "reference" / f"{kind}.md"
    assert out.read_text(encoding="utf-8") == committed.read_text(encoding="utf-8"), \
        f"{committed.relative_to(REPO)} is out of date; regenerate it: " \
        f"evalkit schema {kind} --format markdown --out {committed.relative_to(REPO)}"


@pytest.mark.parametrize("kind", SCHEMAS)
def test_the_reference_page_lists_every_field_of_every_model(kind):
    """Each top-level field, each nested model and each of its fields has its row, with its type and default."""
    page = (REPO / "docs" / "reference" / f"{kind}.md").read_text(encoding="utf-8")
    schema = json.loads(SCHEMAS[kind][1].read_text())
    for model in [schema, *schema["$defs"].values()]:
        for field in model.get("properties", {}):
            assert f"| `{field}` |" in page, field
    for name in schema["$defs"]:
        assert f"\n## {name}\n" in page
    assert "| `depths` | list of number (>= 0.0, <= 1.0) (at least 1 items) | required |" in page or kind == "task"


@pytest.mark.parametrize("kind", SCHEMAS)
def test_the_schema_is_valid_draft_2020_12(kind):
    schema = json.loads(SCHEMAS[kind][1].read_text())
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def _models_in(annotation: object, found: dict[str, type[BaseModel]]) -> dict[str, type[BaseModel]]:
    """Every pydantic model reachable from ``annotation`` (through lists, unions, Annotated), by class name."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation.__name__ not in found:
            found[annotation.__name__] = annotation
            for field in annotation.model_fields.values():
                _models_in(field.annotation, found)
    for argument in typing.get_args(annotation):
        _models_in(argument, found)
    return found


@pytest.mark.parametrize("kind", SCHEMAS)
def test_every_model_that_forbids_extra_keys_has_additional_properties_false(kind):
    root, path = SCHEMAS[kind]
    schema = json.loads(path.read_text())
    models = _models_in(root, {})
    described = {**schema.get("$defs", {}), root.__name__: schema}
    assert set(described) == set(models)  # the walk saw every model the schema describes
    for name, model in models.items():
        assert model.model_config.get("extra") == "forbid", f"{name}: the YAML boundary forbids unknown keys"
        assert described[name].get("additionalProperties") is False, name


def test_a_discriminated_arm_needs_its_key_even_where_it_has_a_default():
    # pydantic picks the arm by `arm:` before defaults apply: without it, {name, top_k} is refused
    document = {**GOOD, "mitigations": ["none", {"name": "top4", "top_k": 4}]}
    with pytest.raises(ValueError):
        EvalConfig.model_validate(document)
    assert not schema_accepts("config", document)
    assert schema_accepts("config", {**GOOD, "mitigations": ["none", {"arm": "mask_heads", "name": "t", "top_k": 4}]})


# ---------------------------------------------------------------- committed files


@pytest.mark.parametrize("kind, path", COMMITTED, ids=[p.name for _, p in COMMITTED])
def test_a_committed_file_names_its_schema_on_its_first_line_and_matches_it(kind, path):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    prefix = "# yaml-language-server: $schema="
    assert first.startswith(prefix), f"{path.relative_to(REPO)}: first line should be {prefix}..."
    assert (path.parent / first.removeprefix(prefix)).resolve() == SCHEMAS[kind][1]
    errors = [error.message for error in validator(kind).iter_errors(yaml.safe_load(path.read_text()))]
    assert errors == []


@pytest.mark.parametrize("kind, path", COMMITTED, ids=[p.name for _, p in COMMITTED])
def test_the_loaders_ignore_the_schema_line(kind, path, tmp_path):
    # the line is a YAML comment: loading the file gives what its text without the line validates to
    body = "".join(path.read_text(encoding="utf-8").splitlines(keepends=True)[1:])
    model, _ = SCHEMAS[kind]
    without = model.model_validate(yaml.safe_load(body)).model_dump()
    loaded = load_config(path) if kind == "config" else load_task_file(path)
    assert loaded.model_dump() == without


# ---------------------------------------------------------------- agreement with the validators

# refused before any document exists: nothing for a schema to see
BEFORE_THE_SCHEMA = {
    "test_config: malformed YAML": "YAML syntax",
    "test_config: override without =": "--set syntax",
    "test_config: override bad YAML": "YAML syntax of a --set value",
    "test_config: override index out of range": "--set names an entry the file does not have",
    "test_config: override into a scalar": "--set walks into a scalar",
    "hostile: nested config file": "YAML nesting limit (32 levels), checked while parsing",
    "hostile: nested --set value": "YAML nesting limit of a --set value",
    "hostile: nested --set past recursion": "YAML nesting limit of a --set value",
    "hostile: alias bomb used": "YAML alias expansion limit, checked while parsing",
    "hostile: alias bomb unused": "YAML alias expansion limit, checked while parsing",
    "hostile: alias bomb task file": "YAML alias expansion limit of the task file",
    "hostile: alias bomb --set": "YAML alias expansion limit of a --set value",
    "hostile: config is a fifo": "what the path is (a FIFO)",
    "hostile: config is /dev/zero": "what the path is (a device)",
    "hostile: config symlink loop": "what the path is (a link loop)",
    "hostile: config broken symlink": "what the path is (a broken link)",
}

# right in shape, refused by what no JSON Schema can say
BEYOND_THE_SCHEMA = {
    "test_config: duplicate model":
        "uniqueness by name across shorthand and mapping entries (uniqueItems compares whole items)",
    "test_config: served without its block": "cross-field: backend: served needs served:",
    "test_config: served block on transformers": "cross-field: served: needs backend: served",
    "test_config: random init on a served backend": "cross-field: init: random needs backend: transformers",
    "test_config: init_seed without random init": "cross-field: init_seed needs init: random",
    "test_config: duplicate random control":
        "uniqueness by label (name and init) across entries written differently (uniqueItems compares whole items)",
    "attention: decode steps past the answer":
        "cross-field: attention.decode_steps against every model's max_new_tokens",
    "hostile: max_new_tokens float": "JSON has one number type: 8.0 is the integer 8 to a JSON Schema",
    "hostile: grid too large": "cross-field: samples x models x tasks x lengths x depths against the trial limit",
    "hostile: pickle weights": "what the model folder holds",
    "hostile: attn bogus": "the attention kernels of the installed transformers",
    "hostile: cuda without cuda": "the machine's devices",
    "hostile: cuda:99": "the machine's devices",
    "hostile: device_map cuda without cuda": "the machine's devices",
    "hostile: flash attention on cpu": "the machine's devices",
    "hostile: task_dirs missing": "the file system",
    "hostile: task_dirs a file": "the file system",
    "hostile: huge width": "a template's format spec (parsed by the validator)",
    "hostile: wide precision": "a template's format spec (parsed by the validator)",
    "hostile: nested format field": "a template's format spec (parsed by the validator)",
    "hostile: needle line with several needles": "cross-field: raw_prompt.needle_line against the generator's needles",
    "hostile: hub id offline": "the network",
    "hostile: task file is a fifo": "the file system (what the task path is)",
    "hostile: task name is a fifo in task_dirs": "the file system (what the task path is)",
    "hostile: task file symlink loop": "the file system (what the task path is)",
    "hostile: haystack file is a fifo": "the file system (what the haystack path is)",
    "hostile: haystack all tiny": "the haystack files' contents",
    "hostile: no chat template": "the tokenizer files",
    "hostile: served key variable unset": "the environment",
    "hostile: served program missing": "the file system",
    "hostile: served program not on PATH": "PATH",
    "hostile: served program not executable": "the file system (mode bits)",
    "hostile: served port closed": "the network",
}


def _verdict(name: str, config: Path, task: Path | None, overrides: list[str], output_dir: str | None) -> None:
    """Assert what the schema says of one refused case, by the lists above."""
    try:
        document, _ = read_raw_config(config, overrides, output_dir)
        task_document = read_yaml_mapping(task, TaskError, "name") if task is not None else None
    except (ConfigError, TaskError):
        assert name in BEFORE_THE_SCHEMA, f"{name}: refused before validation; list it in BEFORE_THE_SCHEMA"
        return
    assert name not in BEFORE_THE_SCHEMA, f"{name}: a document reaches the schema; take it out of BEFORE_THE_SCHEMA"
    accepted = schema_accepts("config", document) and (task_document is None or schema_accepts("task", task_document))
    if name in BEYOND_THE_SCHEMA:
        assert accepted, f"{name}: the schema refuses it now; take it out of BEYOND_THE_SCHEMA"
    else:
        assert not accepted, f"{name}: the validator refuses it and the schema accepts it"


# case names: "test_config: ..." (BAD), "attention: ..." (BAD_ATTENTION), "hostile: ..." (test_hostile_inputs.ROWS)
CONFIG_CASES = [(f"test_config: {c[0]}", c[1], c[2]) for c in BAD] + [
    (f"attention: {c[0]}", changed(attention=c[1]), ()) for c in BAD_ATTENTION]


@pytest.mark.parametrize("name, content, overrides", CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES])
def test_the_schema_refuses_the_bad_configs_of_test_config(tmp_path, name, content, overrides):
    path = write(tmp_path, content)
    with pytest.raises(ConfigError):  # the validator refuses it (what test_config holds)
        load_config(path, overrides)
    if isinstance(content, str) and name != "test_config: malformed YAML":
        # a file that is not a mapping (a list, nothing): the loader refuses it first; the schema too
        assert not isinstance(yaml.safe_load(content), dict) and not schema_accepts("config", yaml.safe_load(content))
        return
    _verdict(name, path, None, list(overrides), None)


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_the_schema_refuses_the_hostile_inputs_or_lists_why_not(row, tmp_path, monkeypatch):
    # the documents test_hostile_inputs writes, with its setup (which may replace the file)
    monkeypatch.chdir(tmp_path)
    model = {"name": "tiny-model", "dtype": "float32", "device": "cpu", "max_new_tokens": 3, **row.model}
    task = None
    if row.task is not None:
        task = tmp_path / "hostile.yaml"
        task.write_text(yaml.safe_dump({"name": "hostile", "needle": "The code is {value}.", "question": "What?",
                                        "value": {"kind": "integer", "digits": 5}, "answer": "{value}", **row.task}))
    fields = {"models": [model], "tasks": [str(task) if task else "passkey"], "context_lengths": [128],
              "depths": [0.5], "samples": 1, "output_dir": "run", **row.top}
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(fields, allow_unicode=True, sort_keys=False))
    config = (row.setup(tmp_path, config, monkeypatch) if row.setup is not None else None) or config
    pairs = list(zip(row.args[::2], row.args[1::2]))  # (flag, value): --set KEY=VALUE, --output-dir DIR
    overrides = [value for flag, value in pairs if flag == "--set"]
    output_dir = next((value for flag, value in pairs if flag == "--output-dir"), None)
    _verdict(f"hostile: {row.name}", config, task, overrides, output_dir)


def test_every_listed_case_is_a_case_of_the_tables():
    names = {c[0] for c in CONFIG_CASES} | {f"hostile: {r.name}" for r in ROWS}
    assert set(BEFORE_THE_SCHEMA) | set(BEYOND_THE_SCHEMA) <= names


# task files: the fuzzer's explicit task mutations (test_fuzz_inputs.py: task_value, task_text), as one table
BASE_TASK = {"name": "t", "needle": "The code is {value}.", "value": {"kind": "integer", "digits": 5},
             "question": "What is the code?", "answer": "{value}"}
TEMPLATE = "a template's fields (parsed by the validator)"
TASK_CASES = [
    ("digits 0", {"value": {"kind": "integer", "digits": 0}}, None),
    ("digits 41", {"value": {"kind": "integer", "digits": 41}}, None),
    ("digits as text", {"value": {"kind": "integer", "digits": "5"}}, None),
    ("unknown value kind", {"value": {"kind": "colour"}}, None),
    ("choice of none", {"value": {"kind": "choice", "values": []}}, None),
    ("choice of one", {"value": {"kind": "choice", "values": ["only"]}}, None),
    ("choice repeated", {"value": {"kind": "choice", "values": ["a", "a"]}}, None),
    ("choice empty text", {"value": {"kind": "choice", "values": ["", "b"]}}, None),
    ("choice a string", {"value": {"kind": "choice", "values": "ab"}}, None),
    ("word with a key", {"value": {"kind": "word", "x": 1}}, None),
    ("value without kind", {"value": {}}, None),
    ("value a number", {"value": 3}, None),
    ("needle without value", {"needle": "no value here"}, TEMPLATE),
    ("needle unclosed", {"needle": "{value"}, TEMPLATE),
    ("needle other field", {"needle": "{other} {value}"}, TEMPLATE),
    ("needle conversion", {"needle": "{value!x}"}, TEMPLATE),
    ("needle empty", {"needle": ""}, None),
    ("question other field", {"question": "{other}?"}, TEMPLATE),
    ("name a path", {"name": "../../x"}, None),
    ("name hidden", {"name": ".hidden"}, None),
    ("name empty", {"name": ""}, None),
    ("unknown haystack source", {"haystack": {"source": "web"}}, None),
    ("files haystack without path", {"haystack": {"source": "files"}}, None),
    ("generated haystack with a path", {"haystack": {"source": "generated", "path": "x.txt"}}, None),
    ("haystack without source", {"haystack": {}}, None),
    ("no needle and no generator", {"needle": None}, "cross-field: needle, value, question unless generator:"),
    ("documents and a needle", {"documents": {"source": {"format": "liu_kv", "path": "kv.jsonl"}}},
     "cross-field: a documents task takes no needle"),
    ("keyword threshold 0", {"keyword_threshold": 0.0}, None),
    ("unknown metric", {"metric": "bleu"}, None),
    ("unknown key", {"neeedle": "x"}, None),
]


@pytest.mark.parametrize("name, change, beyond", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_the_schema_refuses_the_bad_task_files_or_lists_why_not(name, change, beyond):
    document = {key: value for key, value in {**BASE_TASK, **change}.items() if value is not None}
    with pytest.raises(ValueError):
        TaskSpec.model_validate(document)
    assert schema_accepts("task", document) == (beyond is not None), name


# ---------------------------------------------------------------- valid documents: both accept

VALID_CONFIGS = {
    "test_config GOOD": GOOD,
    "model shorthand": changed(models=["smollm2-135m-instruct", {"name": "other", "device": "cuda:1"}]),
    "arm shorthand and options": changed(attention={"capture": True}, mitigations=[
        "none", "reorder_by_relevance", {"arm": "mask_heads", "name": "top4", "top_k": 4},
        {"arm": "mask_heads", "name": "r4", "random_k": 4, "seed": 1},
        {"arm": "calibrate_attention", "strength": 0.5}]),
    "batch auto without reuse": changed(reuse_prefix=False, batch_size="auto"),
    "batch 8 without reuse": changed(reuse_prefix=False, batch_size=8),
    "layout grid": changed(layout={"question_position": ["after", "before"], "chat_template": [None, False]}),
    "served entry": changed(models=[{"name": "m", "backend": "served", "served": {
        "base_url": "http://127.0.0.1:8080", "engine": "openai", "serve": ["llama-server", "-m", "x.gguf"]}}]),
    "random-init control beside its model": changed(models=["m", {"name": "m", "init": "random", "init_seed": 3}]),
    "device map strategy": changed(models=[{"name": "m", "device_map": "balanced_low_0"}]),
    "device map device": changed(models=[{"name": "m", "device_map": "cuda:0"}]),
    "integer depths": changed(depths=[0, 1]),
    "window fractions": changed(context_unit="window", context_lengths=[0.25, 0.5, 1],
                                models=[{"name": "m", "context_window": 8192}]),
    "every optional top-level key": changed(seed=3, values="per_trial", save_prompts=True, length_tolerance_tokens=2,
                                            task_dirs=["more"], data_dir="data", controls=["closed_book", "oracle"]),
}


@pytest.mark.parametrize("name", VALID_CONFIGS)
def test_a_valid_config_is_accepted_by_both(name):
    EvalConfig.model_validate(VALID_CONFIGS[name])
    assert schema_accepts("config", VALID_CONFIGS[name]), list(validator("config").iter_errors(VALID_CONFIGS[name]))

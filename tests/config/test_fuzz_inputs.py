"""Fuzzed configs and task files: every bad input ends in one line naming the file and the field, exit 2.

Hypothesis mutates a valid config and a valid task file (wrong types, unknown keys, out-of-range
depths, negative or huge lengths, empty lists, missing files, malformed YAML, bad task fields,
bad ``--set`` overrides). Each case goes through the real CLI entry, ``evalkit.cli.main``, in this
process (``validate`` or ``run``), so a few hundred cases take seconds; two cases also run through a
real ``python -m evalkit`` subprocess. Every mutation is invalid by construction (config-field
mutations are filtered through the pydantic schema), so a case that exits 0 is a missed check.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from evalkit.cli import main
from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.tasks import TaskSpec

REPO = Path(__file__).resolve().parents[2]
TASK = "fuzztask"
MIN_CASES = 200

BASE_TASK = {
    "name": TASK, "description": "fuzz base", "needle": "The code is {value}.",
    "value": {"kind": "integer", "digits": 5}, "question": "What is the code?", "answer": "{value}",
    "instructions": "Find the code.", "answer_prefix": "The code is", "haystack": {"source": "generated"},
}

# values of every YAML kind; a mutation keeps only those the schema refuses
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(allow_nan=True, allow_infinity=True), _TEXT,
    st.lists(st.one_of(st.integers(-5, 5000), st.floats(-2, 2), _TEXT, st.none(), st.booleans()), max_size=3),
    st.dictionaries(_TEXT, st.integers(), max_size=2),
)
KEY = st.text("abcdefghijklmnopqrstuvwxyz_-.0123456789", min_size=1, max_size=12)

# fragments that break the YAML they are inserted into (``broken_yaml`` keeps only placements PyYAML refuses)
BROKEN_YAML = [
    "depths: [0.0, 0.5\n", "models: {name: x\n", 'output_dir: "unterminated\n', "\tsamples: 2\n",
    "- a list item in a mapping\n", "samples: 2\n  nested: under a scalar\n", "x: !!python/object/apply:os.system [echo hi]\n",
    "y: !!python/name:os.system\n", "key: *undefined_alias\n", "[unclosed: flow\n", "? complex key\n: : :\n",
]


@st.composite
def broken_yaml(draw, data: dict) -> str:
    """``data`` as YAML with a broken fragment inserted at a line boundary (PyYAML itself must refuse it)."""
    lines = yaml.safe_dump(data, sort_keys=False).splitlines(keepends=True)
    at = draw(st.integers(0, len(lines)))
    text = "".join(lines[:at]) + draw(st.sampled_from(BROKEN_YAML)) + "".join(lines[at:])
    try:
        yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    assume(False)  # the fragment happened to fit in (e.g. a list item under a list key)
    raise AssertionError("unreachable")


@dataclass
class Case:
    """One fuzzed input: the files as written, the --set overrides, and what the error must name."""

    config: dict | str | None  # None: the config file does not exist
    task: dict | str | None  # None: the task file does not exist
    overrides: list[str] = field(default_factory=list)
    where: str = ""  # text that must follow "error: CONFIG: " (the field, or "tasks[0]: TASKFILE: field")
    in_task: bool = False  # ``where`` is inside the task file


TASK_PATH, OUT_DIR = "@TASK_PATH@", "@OUT_DIR@"  # replaced by the case's real paths when written


def base_config(model: str) -> dict:
    """A valid config for the tiny model and the fuzz task (paths as placeholders)."""
    return {"models": [{"name": model, "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
            "tasks": [TASK_PATH], "context_lengths": [128, 256], "depths": [0.0, 0.5, 1.0], "samples": 2, "seed": 1,
            "output_dir": OUT_DIR}


def _refused_by_schema(model: type, data: dict) -> bool:
    try:
        model.model_validate(data)
    except ValidationError:
        return True
    return False


# ---------------------------------------------------------------- config mutations


@st.composite
def field_key(draw, schema: type) -> str:
    """A field of ``schema`` or a key it does not know."""
    key = draw(st.sampled_from([*schema.model_fields, "unknown"]))
    return draw(KEY.filter(lambda k: k not in schema.model_fields)) if key == "unknown" else key


@st.composite
def config_field(draw, base: dict) -> Case:
    key = draw(field_key(EvalConfig))
    cfg = {**base, key: draw(ANY_VALUE)}
    assume(_refused_by_schema(EvalConfig, cfg))
    return Case(cfg, BASE_TASK, where=key)


@st.composite
def model_field(draw, base: dict) -> Case:
    key = draw(field_key(ModelConfig))
    entry = {**base["models"][0], key: draw(ANY_VALUE)}
    assume(_refused_by_schema(ModelConfig, entry))
    return Case({**base, "models": [entry]}, BASE_TASK, where=f"models[0].{key}")


@st.composite
def list_entry(draw, base: dict) -> Case:
    """Empty lists, out-of-range depths, negative, tiny and huge lengths, repeats, huge grids and tolerances."""
    key = draw(st.sampled_from(["models", "tasks", "context_lengths", "depths", "samples", "length_tolerance_tokens"]))
    if key == "samples":  # a grid too large to plan
        return Case({**base, key: draw(st.integers(10**7, 10**30))}, BASE_TASK, where=key)
    if key == "length_tolerance_tokens":  # a tolerance that could leave the smallest prompt without haystack
        return Case({**base, key: draw(st.integers(128, 10**20))}, BASE_TASK, where=key)
    kind = draw(st.sampled_from(["empty", "bad", "repeat"]))
    values = list(base[key])
    if kind == "empty":
        values = []
    elif kind == "repeat":
        values.append(values[0])
    elif key == "depths":
        values.append(draw(st.one_of(st.floats(max_value=-1e-9), st.floats(min_value=1.0 + 1e-9), st.just(float("nan")))))
    elif key == "context_lengths":
        # below the schema's 32, above the tiny model's 4096 - 3, or too small for the prompt's fixed parts
        values.append(draw(st.one_of(st.integers(max_value=31), st.integers(4094, 10**40), st.integers(32, 40))))
    else:
        values.append(draw(st.one_of(st.integers(), st.none(), st.just(""), st.lists(st.integers(), max_size=2))))
    return Case({**base, key: values}, BASE_TASK, where=key)


@st.composite
def broken_config_file(draw, base: dict) -> Case:
    kind = draw(st.sampled_from(["yaml", "top", "missing", "missing_task", "unknown_task"]))
    if kind == "yaml":
        return Case(draw(broken_yaml(base)), BASE_TASK, where="line ")
    if kind == "top":
        return Case(draw(st.sampled_from(["", "# only a comment\n", "- a\n- b\n", "just text\n", "42\n"])), BASE_TASK,
                    where="top level")
    if kind == "missing":
        return Case(None, BASE_TASK, where="file not found")
    if kind == "missing_task":
        return Case(base, None, where="tasks[0]: ")
    name = draw(st.text("abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=10).filter(lambda n: n != TASK))
    return Case({**base, "tasks": [name]}, BASE_TASK, where="tasks[0]: unknown task")


@st.composite
def bad_override(draw, base: dict) -> Case:
    kind = draw(st.sampled_from(["value", "no_equals", "bad_yaml", "index"]))
    if kind == "value":
        key = draw(st.sampled_from(["samples", "seed", "depths", "context_lengths", "save_prompts", "models.0.dtype",
                                    "models.0.max_new_tokens", "length_tolerance_tokens"]))
        value = draw(ANY_VALUE)
        text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("\n...").strip()
        assume("\n" not in text)
        changed = yaml.safe_load(yaml.safe_dump(base))
        top, _, sub = key.partition(".0.")
        if sub:
            changed[top][0][sub] = yaml.safe_load(text)
            assume(_refused_by_schema(ModelConfig, changed[top][0]))
        else:
            changed[top] = yaml.safe_load(text)
            assume(_refused_by_schema(EvalConfig, changed))
        shown = key.replace(".0.", "[0].")
        return Case(base, BASE_TASK, overrides=[f"{key}={text}"], where=shown)
    if kind == "no_equals":
        return Case(base, BASE_TASK, overrides=[draw(KEY)], where="--set ")
    if kind == "bad_yaml":
        return Case(base, BASE_TASK, overrides=["depths=[0, 0.5"], where="--set ")
    return Case(base, BASE_TASK, overrides=[f"models.{draw(st.integers(1, 9))}.dtype=float16"], where="--set ")


# ---------------------------------------------------------------- task mutations


@st.composite
def task_field(draw, base: dict) -> Case:
    key = draw(field_key(TaskSpec))
    task = {**BASE_TASK, key: draw(ANY_VALUE)}
    assume(_refused_by_schema(TaskSpec, task) or task.get("name") != TASK)
    return Case(base, task, where=key, in_task=True)


@st.composite
def task_value(draw, base: dict) -> Case:
    value = draw(st.sampled_from([
        {"kind": "integer", "digits": draw(st.one_of(st.integers(max_value=0), st.integers(min_value=41)))},
        {"kind": "integer", "digits": draw(ANY_VALUE.filter(lambda v: not isinstance(v, int) or isinstance(v, bool)))},
        {"kind": draw(KEY.filter(lambda k: k not in ("integer", "choice", "word", "uuid")))},
        {"kind": "choice", "values": draw(st.sampled_from([[], ["only"], ["a", "a"], [""], "ab", None]))},
        {"kind": "word", draw(KEY): 1},
        {},
        draw(ANY_VALUE.filter(lambda v: not isinstance(v, dict))),
    ]))
    return Case(base, {**BASE_TASK, "value": value}, where="value", in_task=True)


@st.composite
def task_text(draw, base: dict) -> Case:
    """Templates, names and haystacks that cannot work."""
    kind = draw(st.sampled_from(["needle", "question", "name", "haystack"]))
    if kind == "needle":
        needle = draw(st.sampled_from(["no value here", "{value", "{other} {value}", "{0}", "{value!x}", ""]))
        return Case(base, {**BASE_TASK, "needle": needle}, where="needle", in_task=True)
    if kind == "question":
        return Case(base, {**BASE_TASK, "question": draw(st.sampled_from(["{other}?", "}{", "{"]))}, where="question",
                    in_task=True)
    if kind == "name":
        name = draw(st.sampled_from(["../../x", "/etc/passwd", "a/b", "", ".hidden", "..", f"{TASK}/..", "x" * 300]))
        return Case(base, {**BASE_TASK, "name": name}, where="name", in_task=True)
    haystack = draw(st.sampled_from([
        {"source": draw(KEY.filter(lambda k: k not in ("generated", "files")))}, {"source": "files"},
        {"source": "files", "path": "no_such_file.txt"}, {"source": "files", "path": "nothing*.txt"},
        {"source": "files", "path": "empty.txt"}, {"source": "files", "path": "."},
        {"source": "generated", "path": "x.txt"}, {},
    ]))
    return Case(base, {**BASE_TASK, "haystack": haystack}, where="haystack", in_task=True)


@st.composite
def broken_task_file(draw, base: dict) -> Case:
    kind = draw(st.sampled_from(["yaml", "top"]))
    if kind == "yaml":
        return Case(base, draw(broken_yaml(BASE_TASK)), where="line ", in_task=True)
    return Case(base, draw(st.sampled_from(["", "- a\n", "text\n"])), where="top level", in_task=True)


def cases(base: dict) -> st.SearchStrategy[Case]:
    return st.one_of(config_field(base), model_field(base), list_entry(base), broken_config_file(base),
                     bad_override(base), task_field(base), task_value(base), task_text(base), broken_task_file(base))


# ---------------------------------------------------------------- running one case


def _materialise(case: Case, folder: Path) -> tuple[Path, Path, Path]:
    """Write the case's files into ``folder`` (placeholders become real paths); return (config, task, out)."""
    out, config_path, task_path = folder / "out", folder / "cfg.yaml", folder / "tasks" / f"{TASK}.yaml"
    task_path.parent.mkdir()
    (task_path.parent / "empty.txt").write_text("")
    for path, content in ((config_path, case.config), (task_path, case.task)):
        if content is None:
            continue  # a missing file is the case
        text = content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False)
        path.write_text(text.replace(TASK_PATH, str(task_path)).replace(OUT_DIR, str(out)), encoding="utf-8")
    return config_path, task_path, out


def check_case(case: Case, command: str, folder: Path) -> str:
    config_path, task_path, out = _materialise(case, folder)
    argv = [command, str(config_path), *[f"--set={o}" for o in case.overrides]]
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        code = main([*argv, "--quiet"] if command == "run" else argv)
    text = stderr.getvalue()
    assert code == 2, f"{case}: exit {code}, stderr {text!r}"
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"{case}: {lines}"
    where = f"{config_path}: tasks[0]: {task_path}: {case.where}" if case.in_task else f"{config_path}: {case.where}"
    assert lines[0].startswith(f"error: {where}"), f"{case}: expected 'error: {where}...', got {lines[0]!r}"
    assert not out.exists(), f"{case}: {command} wrote {out} before validation passed"
    return lines[0]


# ---------------------------------------------------------------- the tests


def test_every_fuzzed_bad_input_is_one_line_exit_2_and_writes_nothing(tiny_model_dir, monkeypatch):
    import huggingface_hub.constants

    # a mutation that slips a Hub id through must fail offline, never reach the network
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = base_config(str(tiny_model_dir))
    seen: list[str] = []

    @settings(max_examples=MIN_CASES + 40, deadline=None, database=None,
              suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
    @given(case=cases(base), command=st.sampled_from(["validate", "run"]))
    def check(case: Case, command: str) -> None:
        with tempfile.TemporaryDirectory() as folder:
            seen.append(check_case(case, command, Path(folder)))

    check()
    assert len(seen) >= MIN_CASES, f"only {len(seen)} fuzzed cases ran"


@pytest.mark.parametrize("case", [
    Case({"samples": "many"}, BASE_TASK, where="samples"),
    Case(None, {**BASE_TASK, "value": {"kind": "integer", "digits": 0}}, where="value.digits", in_task=True),
], ids=["config type", "task range"])
def test_fuzz_cases_through_a_real_subprocess(tmp_path, tiny_model_dir, case):
    base = base_config(str(tiny_model_dir))
    case = Case({**base, **case.config} if case.config else base, case.task, where=case.where, in_task=case.in_task)
    config_path, task_path, out = _materialise(case, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", "evalkit", "run", str(config_path), "--quiet"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    where = f"{config_path}: tasks[0]: {task_path}: {case.where}" if case.in_task else f"{config_path}: {case.where}"
    assert line.startswith(f"error: {where}")
    assert not out.exists()


@pytest.mark.parametrize("needle", ["The code is {value!x}.", "The code is {value:d}.", "The code is {value:%}."])
def test_found_by_the_fuzzer_template_that_fails_only_when_filled(tmp_path, tiny_model_dir, needle):
    # these passed validation and crashed the run with a ValueError traceback at the first trial
    case = Case(base_config(str(tiny_model_dir)), {**BASE_TASK, "needle": needle}, where="needle", in_task=True)
    assert "cannot be filled in" in check_case(case, "run", tmp_path)

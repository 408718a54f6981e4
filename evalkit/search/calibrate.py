"""``evalkit calibrate CONFIG``: the difficulty search for every model x task of a config, and what it writes.

For each model and task the search (``staircase.py``) runs its steps as run directories (``steps.py``) under
``FOLDER/<model>/<task>/``, where ``FOLDER`` is ``--output-dir`` or the config's ``output_dir`` with
``-calibrate`` appended. It writes ``FOLDER/search.json`` (every step: setting, samples, successes per depth, the
best depth's accuracy and interval, the decision) and, per model x task, ``calibrated.yaml``: the user's config
for that model and task at the setting found, ready for ``evalkit run``.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError
from evalkit.run.plan import task_name_of
from evalkit.run.preflight import prepare_tasks
from evalkit.search.staircase import SearchOutcome, SearchRule, candidate_settings, run_search
from evalkit.search.steps import StepGrid, StepRunner, check_searchable, path_part
from evalkit.store.format import write_atomic
from evalkit.tasks import is_task_path

log = logging.getLogger(__name__)

TRACE_FILE = "search.json"
FRAGMENT_FILE = "calibrated.yaml"


@dataclass(frozen=True)
class Calibration:
    """One model x task's search: what it found and where its config fragment is."""

    model: str
    task: str
    axis: str
    depths: tuple[float, ...]
    outcome: SearchOutcome
    fragment: Path


def search_folder(config: EvalConfig, output_dir: str | None) -> Path:
    """Where the search writes: ``output_dir`` as given, else the config's run directory plus ``-calibrate``."""
    return Path(output_dir) if output_dir else Path(f"{config.output_dir.rstrip('/')}-calibrate")


def calibrate(config: EvalConfig, config_path: Path, output_dir: str | None = None) -> list[Calibration]:
    """Search every model x task of ``config`` (its ``search:`` block) and write the trace and fragments."""
    check_searchable(config)
    search = config.search
    assert search is not None  # check_searchable refuses a config without one
    tasks = prepare_tasks(config, config_path)
    for index, (entry, task) in enumerate(zip(config.tasks, tasks.values())):  # prepared in config order
        if task.spec.documents is not None:
            raise ConfigError(f"{config_path}: tasks[{index}]: {entry!r} is a documents task, whose prompt length "
                              "is its documents'; calibrate needle tasks (a documents axis is not searched yet)")
    folder = search_folder(config, output_dir)
    depths = tuple(search.search_depths(config.depths))
    rule = SearchRule(search.target, search.tolerance, search.samples_per_step, search.budget, len(depths))
    candidates = candidate_settings(search.axis, search.low, search.high)
    results = []
    for model in config.models:
        if model.init == "random":  # its accuracy means nothing: there is no difficulty to find
            log.info("calibrate: %s skipped (random weights)", model.label)
            continue
        for entry in config.tasks:
            where = folder / path_part(model.label) / path_part(task_name_of(entry))
            grid = StepGrid(config, config_path, model, entry, depths, search.budget // len(depths), where)
            log.info("calibrate %s x %s: %s from %d to %d, target %.0f%%", model.label, task_name_of(entry),
                     search.axis, search.low, search.high, 100 * search.target)
            outcome = run_search(candidates, StepRunner(grid), rule)
            fragment = write_fragment(config, config_path, grid, outcome.setting)
            results.append(Calibration(model.label, task_name_of(entry), search.axis, depths, outcome, fragment))
    write_atomic(folder / TRACE_FILE, json.dumps([_trace(c) for c in results], indent=1) + "\n")
    return results


def _trace(result: Calibration) -> dict[str, Any]:
    data = asdict(result)
    data["fragment"] = str(result.fragment)
    return data


def write_fragment(config: EvalConfig, config_path: Path, grid: StepGrid, setting: int) -> Path:
    """``calibrated.yaml`` in ``grid.folder``: the config for one model and task at ``setting``, paths rebased."""
    search = config.search
    assert search is not None
    data = config.model_dump(mode="json", exclude_defaults=True, exclude={"search"})
    data["models"] = [grid.model.model_dump(mode="json", exclude_defaults=True)]
    data["tasks"] = [_rebased(config, grid.task, grid.folder) if is_task_path(grid.task) else grid.task]
    for field in ("task_dirs",):
        if field in data:
            data[field] = [_rebased(config, item, grid.folder) for item in data[field]]
    if "data_dir" in data:
        data["data_dir"] = _rebased(config, data["data_dir"], grid.folder)
    for arm in data.get("mitigations", []):
        if isinstance(arm, dict) and arm.get("from_run"):
            arm["from_run"] = _rebased(config, arm["from_run"], grid.folder)
    if search.axis == "context_length":  # a setting is tokens, whatever unit the grid's lengths are in
        data["context_lengths"] = [setting]
        data.pop("context_unit", None)
    else:
        data.setdefault("layout", {})["distractor_count"] = [setting]
    data["output_dir"] = f"{config.output_dir.rstrip('/')}-{grid.folder.parent.name}-{grid.folder.name}"
    header = (f"# written by `evalkit calibrate {config_path}`: {search.axis} {setting} for {grid.model.label} x "
              f"{task_name_of(grid.task)} (see {TRACE_FILE} beside the model folders)\n")
    path = grid.folder / FRAGMENT_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return path


def _rebased(config: EvalConfig, relative: str, folder: Path) -> str:
    """A path of the config (relative to its file) written relative to ``folder``, where the fragment lives."""
    target = config.base_dir / Path(relative).expanduser()
    return relative if Path(relative).expanduser().is_absolute() else os.path.relpath(target, folder)


def format_calibration(result: Calibration) -> str:
    """The lines ``evalkit calibrate`` prints for one model x task: the setting, its interval, every step."""
    outcome = result.outcome
    low, high = outcome.interval
    lines = [f"{result.model} x {result.task}: {result.axis} {outcome.setting} ({outcome.status}); accuracy at the "
             f"best position {outcome.accuracy:.0%} [{low:.0%}, {high:.0%}] over {outcome.samples} samples; "
             f"{len(outcome.steps)} steps, {outcome.trials_used} trials",
             "  | step | setting | samples | correct per depth | best accuracy | 95% interval | decision |",
             "  | --- | --- | --- | --- | --- | --- | --- |"]
    for number, step in enumerate(outcome.steps, 1):
        per_depth = ", ".join(f"{d:g}: {c}" for d, c in zip(result.depths, step.successes))
        lines.append(f"  | {number} | {step.setting} | {step.samples} | {per_depth} | {step.accuracy:.0%} | "
                     f"[{step.interval[0]:.0%}, {step.interval[1]:.0%}] | {step.decision} |")
    lines.append(f"  run it: evalkit run {result.fragment}")
    return "\n".join(lines)

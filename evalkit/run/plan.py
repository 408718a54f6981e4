"""Expand an eval config into trials: model x task x sample x context length x depth, with stable ids.

Paired design (``values: per_sample``, the default): ``Trial.seed`` depends on (config seed, task name, sample)
only, so every length and depth of one sample sees the same needle value and the same haystack stream;
differences between cells of a sample come from placement alone. Under ``values: per_trial`` the seed also
depends on the cell (length, depth), so trials are independent; layouts and mitigation arms of one cell still
share it (they stay paired).

Under ``context_unit: window`` the config's lengths are fractions, and each model's trials get that model's tokens
(``config/context_lengths.py``): a cell is (fraction, depth), so seeds under ``per_trial`` stay shared by models,
while trial ids, built from the tokens, differ as the prompts do.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from evalkit.config.resolved_lengths import ContextLengths, token_lengths
from evalkit.config.mitigations import arm_variant
from evalkit.config.schema import EvalConfig
from evalkit.config.trial_ids import id_length, trial_id, trial_seed, trial_variant
from evalkit.errors import ConfigError, TaskError
from evalkit.tasks import TaskSpec, is_task_path
from evalkit.types import Trial

__all__ = ["cell_seed", "count_trials", "expand", "sample_seeds", "limit_trials", "task_name_of", "trial_id", "trial_seed"]


def task_name_of(entry: str) -> str:
    """The task name a config ``tasks`` entry refers to (a path's file name without .yaml)."""
    return Path(entry).stem if is_task_path(entry) else entry


def _ordered_tasks(cfg: EvalConfig, tasks: Mapping[str, TaskSpec]) -> list[TaskSpec]:
    """The loaded spec of every config entry, in config order; keys may be entries or task names."""
    specs: list[TaskSpec] = []
    first_index: dict[str, int] = {}
    for index, entry in enumerate(cfg.tasks):
        spec = tasks.get(entry)
        if spec is None:
            spec = tasks.get(task_name_of(entry))
        if spec is None:
            raise TaskError(f"{cfg.source_label}: tasks[{index}]: {entry!r} was not loaded; load every task first")
        if spec.name in first_index:
            raise ConfigError(
                f"{cfg.source_label}: tasks[{index}]: {entry!r} is task {spec.name!r} again "
                f"(tasks[{first_index[spec.name]}]); list each task once"
            )
        first_index[spec.name] = index
        specs.append(spec)
    return specs


def expand(
    cfg: EvalConfig, tasks: Mapping[str, TaskSpec], model_revisions: Mapping[str, str] | None = None,
    lengths: ContextLengths | None = None,
) -> list[Trial]:
    """Every trial of the grid, model-major, then task, sample, layout, context length, depth, mitigation arm.

    Control trials (``cfg.controls``) follow the placement trials of their sample and layout:
    closed-book per length, oracle once (no haystack: one prompt for every length, no depth), dummy needle
    per length and depth. A control without a needle position has depth NaN; the oracle sits in the grid's
    largest length (``context_length``, the bound its prompt is built under; its id has no length).
    Each cell runs once per mitigation arm (``cfg.mitigations``), so every arm pairs one-to-one with ``none``.

    ``tasks`` maps each config ``tasks`` entry (or its task name) to its loaded spec.
    ``model_revisions`` maps model labels (``ModelConfig.label``: the name, or the name with its random init)
    to resolved revisions (e.g. commit hashes); a model
    missing from it uses its configured ``revision`` (or "").
    ``lengths`` gives each model's lengths in tokens (``preflight.model_limits``); a token config may leave it out.
    """
    revisions = dict(model_revisions or {})
    specs = _ordered_tasks(cfg, tasks)
    lengths = lengths or token_lengths(cfg)
    trials: list[Trial] = []
    for model in cfg.models:
        revision = revisions.get(model.label, model.revision or "")
        resolved = dict(zip(cfg.context_lengths, lengths.of(model.label)))  # config length -> this model's
        for spec in specs:
            task_hash = spec.content_hash()
            _refuse_per_trial_documents(cfg, spec)
            for sample in range(cfg.samples):
                for layout in cfg.layout.layouts():
                    pairs = layout.id_pairs()
                    for (control, length, depth), arm in itertools.product(_cells(cfg), cfg.mitigations):
                        seed = cell_seed(cfg, spec.name, sample, length, depth)
                        variant = trial_variant(control, pairs, arm_variant(arm))
                        tokens = resolved[length].tokens
                        tid = trial_id(
                            model=model.label, revision=revision, task=spec.name, task_hash=task_hash,
                            context_length=id_length(control, tokens), depth=None if math.isnan(depth) else depth,
                            sample=sample, config_seed=cfg.seed, variant=variant or None,
                        )
                        trials.append(Trial(tid, model.label, spec.name, tokens, depth, sample, seed, control, pairs,
                                            arm.label, resolved[length].fraction))
    # config validation rejects repeated models, tasks, lengths and depths (and window_lengths fractions that come
    # to the same tokens), so ids cannot collide
    if len({t.trial_id for t in trials}) != len(trials):
        raise ConfigError(f"{cfg.source_label}: the grid repeats a trial; list each model, task, length, depth "
                          "and mitigation arm (with its options) once")
    return trials


def cell_seed(cfg: EvalConfig, task: str, sample: int, context_length: int | float, depth: float) -> int:
    """The ``Trial.seed`` of one cell of ``sample``: the sample's seed, or under ``values: per_trial`` the cell's
    (``context_length`` as the config writes it: a fraction under ``context_unit: window``)."""
    if cfg.values == "per_sample":
        return trial_seed(cfg.seed, task, sample)
    return trial_seed(cfg.seed, task, sample, (context_length, None if math.isnan(depth) else depth))


def sample_seeds(cfg: EvalConfig, task: str, sample: int) -> list[int]:
    """Every seed the trials of ``sample`` use (one under ``per_sample``), for checks that must see each value."""
    return list(dict.fromkeys(cell_seed(cfg, task, sample, length, depth) for _, length, depth in _cells(cfg)))


def _refuse_per_trial_documents(cfg: EvalConfig, spec: TaskSpec) -> None:
    """A documents task picks its question by sample, so ``per_trial`` could not give each trial its own."""
    if cfg.values == "per_trial" and spec.documents is not None:
        raise ConfigError(f"{cfg.source_label}: values: per_trial: task {spec.name!r} is a documents task, whose "
                          "question is chosen per sample; use values: per_sample (the default) for it")


def count_trials(cfg: EvalConfig, tasks: Mapping[str, TaskSpec]) -> int:
    """How many trials ``expand`` plans, counted without building them (``validate`` of a large grid)."""
    specs = _ordered_tasks(cfg, tasks)
    return (len(cfg.models) * len(specs) * cfg.samples * len(cfg.layout.layouts()) * len(_cells(cfg))
            * len(cfg.mitigations))


def _cells(cfg: EvalConfig) -> list[tuple[str, int | float, float]]:
    """(control, context length as the config writes it, depth) of one sample and layout: the grid, then its
    controls."""
    cells = [("", length, depth) for length in cfg.context_lengths for depth in cfg.depths]
    for control in cfg.controls:
        if control == "closed_book":
            cells += [(control, length, math.nan) for length in cfg.context_lengths]
        elif control == "oracle":
            cells.append((control, max(cfg.context_lengths), math.nan))
        else:
            cells += [(control, length, depth) for length in cfg.context_lengths for depth in cfg.depths]
    return cells


def limit_trials(trials: Sequence[Trial], n: int | None) -> list[Trial]:
    """The first ``n`` trials in plan order (all of them for None)."""
    if n is None:
        return list(trials)
    if n < 0:
        raise ConfigError(f"--limit: {n} is negative; give a number of trials >= 0")
    return list(trials[:n])

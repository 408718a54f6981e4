"""Checks and preparation done once, before any trial runs.

Everything here fails fast with an error naming the config file and field, so a bad
request never costs a partly written run directory.
"""

from __future__ import annotations

import datetime as _dt
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from evalkit.config.schema import EvalConfig, ModelConfig, config_hash
from evalkit.errors import ConfigError, EvalkitError
from evalkit.types import NeedleInstance, PromptParts, Trial


@dataclass(frozen=True)
class PreparedTask:
    """A loaded task with its haystack source, ready to make prompt parts per trial seed."""

    spec: Any  # evalkit.tasks.TaskSpec
    haystack: Any  # evalkit.tasks.haystacks.HaystackSource

    def parts_for(self, seed: int, model_cfg: ModelConfig) -> tuple[PromptParts, NeedleInstance]:
        """The needle drawn from ``seed`` and the prompt pieces for ``model_cfg``."""
        from evalkit.tasks import instantiate_needle, prompt_parts

        needle = instantiate_needle(self.spec, seed)
        return prompt_parts(self.spec, needle, model_cfg), needle

    def sentences(self, seed: int) -> Iterator[str]:
        """The haystack sentence stream for ``seed``."""
        return self.haystack.sentences(seed)


def prepare_tasks(config: EvalConfig, config_path: Path) -> dict[str, PreparedTask]:
    """Load every task of the config with its haystack; errors name the config field."""
    from evalkit.tasks import haystack_for_task, load_task

    prepared: dict[str, PreparedTask] = {}
    for index, name in enumerate(config.tasks):
        try:
            spec = load_task(name, config.task_search_dirs())
            prepared[spec.name] = PreparedTask(spec, haystack_for_task(spec))
        except EvalkitError as err:
            raise type(err)(f"{config_path}: tasks[{index}]: {err}") from None
    return prepared


def check_model_limits(config: EvalConfig, config_path: Path) -> dict[str, str]:
    """Refuse lengths above a model's maximum; return {model name: resolved revision}."""
    from evalkit.models import describe_model

    revisions: dict[str, str] = {}
    longest = max(config.context_lengths)
    for index, model_cfg in enumerate(config.models):
        try:
            info = describe_model(model_cfg)
        except EvalkitError as err:  # say which config entry named the model
            raise type(err)(f"{config_path}: models[{index}].name: {err}") from None
        needed = longest + model_cfg.max_new_tokens
        if info.max_context_tokens is not None and needed > info.max_context_tokens:
            raise ConfigError(
                f"{config_path}: context_lengths: {longest} tokens plus max_new_tokens "
                f"{model_cfg.max_new_tokens} (models[{index}]) exceeds {model_cfg.name}'s maximum of "
                f"{info.max_context_tokens} tokens; use lengths up to {info.max_context_tokens - model_cfg.max_new_tokens}"
            )
        revisions[model_cfg.name] = info.revision
    return revisions


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results, for the run header."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("evalkit", "torch", "transformers", "accelerate", "tokenizers"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def run_header(
    config: EvalConfig, config_path: Path, revisions: dict[str, str], tasks: dict[str, PreparedTask] | None = None,
    planned: list[Trial] | None = None,
) -> dict[str, Any]:
    """The header written once per run directory (and compared on resume; ``planned`` is updated each call).

    ``task_hashes`` (and ``task_files``) let a rerun refuse a changed task file instead of mixing the new
    task's trials in beside the old ones; ``planned`` lets a report say which trials are missing.
    """
    import evalkit

    tasks = tasks or {}
    extra: dict[str, Any] = {
        "task_hashes": {name: task.spec.content_hash() for name, task in tasks.items()},
        "task_files": {name: str(task.spec.source_path) for name, task in tasks.items() if task.spec.source_path},
    }
    if planned is not None:
        extra["planned"] = planned_cells(planned, config)
    return {
        **extra,
        "evalkit_version": evalkit.__version__,
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        "config_path": str(config_path),
        "seed": config.seed,
        "models": revisions,
        "trust_remote_code": {m.name: m.trust_remote_code for m in config.models},
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }


def planned_cells(trials: list[Trial], config: EvalConfig) -> dict[str, Any]:
    """``{"trials": N, "cells": [...]}``: the planned trials per (model, task, control, layout, length, depth) cell.

    The keys are the record columns a report groups by (``layout`` is the label reports use, depth null
    for controls without a needle position), so a report can mark the cells that lack trials.
    """
    from evalkit.config.layouts import Layout

    counts: dict[tuple[Any, ...], int] = {}
    for t in trials:
        depth = None if math.isnan(t.depth) else t.depth
        key = (t.model, t.task, t.control, config.layout.label_of(Layout.from_pairs(t.layout)), t.context_length, depth)
        counts[key] = counts.get(key, 0) + 1
    names = ("model", "task", "control", "layout", "context_length", "depth")
    return {"trials": len(trials), "cells": [{**dict(zip(names, key)), "trials": n} for key, n in counts.items()]}

"""Checks and preparation done once, before any trial runs.

Everything here fails fast with an error naming the config file and field, so a bad
request never costs a partly written run directory.
"""

from __future__ import annotations

import logging
import math
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import evalkit
from evalkit.config.resolved_lengths import ContextLengths, token_lengths, window_lengths
from evalkit.config.layouts import Layout
from evalkit.config.schema import EvalConfig, ModelConfig, config_hash, config_hash_without_samples
from evalkit.errors import ConfigError, EvalkitError
from evalkit.models import describe_model
from evalkit.package_data import package_version
from evalkit.run.axis_checks import check_content_axes
from evalkit.run.environment import hardware_facts, utc_now
from evalkit.store.growth import SAMPLES_FREE_HASH_KEY
from evalkit.store.run_facts import HARDWARE_KEY, hardware_row
from evalkit.store.run_plan import RESOLVED_LENGTHS_KEY
from evalkit.tasks import haystack_for_task, instantiate_needle, is_task_path, load_task, prompt_parts
from evalkit.tasks.registry import TASK_SUFFIXES
from evalkit.types import NeedleInstance, PromptParts, Trial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedTask:
    """A loaded task with its haystack source, ready to make prompt parts per trial seed."""

    spec: Any  # evalkit.tasks.TaskSpec
    haystack: Any  # evalkit.tasks.haystacks.HaystackSource

    def parts_for(self, seed: int, model_cfg: ModelConfig) -> tuple[PromptParts, NeedleInstance]:
        """The needle drawn from ``seed`` and the prompt pieces for ``model_cfg``."""
        needle = instantiate_needle(self.spec, seed)
        return prompt_parts(self.spec, needle, model_cfg), needle

    def sentences(self, seed: int) -> Iterator[str]:
        """The haystack sentence stream for ``seed``."""
        return self.haystack.sentences(seed)


def prepare_tasks(config: EvalConfig, config_path: Path) -> dict[str, PreparedTask]:
    """Load every task of the config with its haystack; errors name the config field."""
    for index, (entry, folder) in enumerate(zip(config.task_dirs, config.task_search_dirs())):
        # a missing folder would be skipped, and a built-in task of the same name used instead
        if not folder.is_dir():
            what = "is not a folder" if folder.exists() else "does not exist"
            raise ConfigError(
                f"{config_path}: task_dirs[{index}]: {entry!r} ({folder}) {what}; relative task_dirs start at "
                f"the config's folder ({config.base_dir}): fix the path or remove the entry"
            )
    prepared: dict[str, PreparedTask] = {}
    for index, name in enumerate(config.tasks):
        try:
            spec = load_task(_task_reference(config, name), config.task_search_dirs())
            prepared[spec.name] = PreparedTask(spec, haystack_for_task(spec, config.data_path()))
            dropped = getattr(prepared[spec.name].haystack, "dropped_sentences", 0)
            if dropped:  # stated once per run here, and in every record's extra
                log.warning("%s: tasks[%d] (%s): %d haystack sentences hold values of the needle's kind and are "
                            "left out", config_path, index, spec.name, dropped)
            left_out = getattr(prepared[spec.name].haystack, "self_answering_left_out", 0)
            if left_out:  # likewise: an echo of such a question scores right in every arm
                log.warning("%s: tasks[%d] (%s): %d questions contain their own answer (metric %s) and are left out "
                            "of the samples (documents.keep_self_answering: true keeps them)", config_path, index,
                            spec.name, left_out, spec.metric)
        except EvalkitError as err:
            raise type(err)(f"{config_path}: tasks[{index}]: {err}") from None
    check_content_axes(config.layout, config_path, {name: task.spec for name, task in prepared.items()})
    return prepared


def _task_reference(config: EvalConfig, entry: str) -> str | Path:
    """A ``tasks`` entry as ``load_task`` takes it: a name as written (built-in or in ``task_dirs``), or a path
    relative to the config file's folder, like ``task_dirs`` and ``data_dir`` (not to where evalkit runs)."""
    if not is_task_path(entry) or Path(entry).suffix not in TASK_SUFFIXES:
        return entry  # a name, or a path find_task refuses as it is written ("not a task file")
    path = config.base_dir / Path(entry).expanduser()  # an absolute entry stays as written
    if not path.exists() and not path.is_symlink():  # a link loop or a broken link: find_task says which
        raise ConfigError(f"{entry!r} ({path}): task file not found; relative task paths start at the config's "
                          f"folder ({config.base_dir}): fix the path")
    return path


@dataclass(frozen=True)
class ModelLimits:
    """What ``model_limits`` found: each model's resolved revision, and its context lengths in tokens."""

    revisions: dict[str, str]
    lengths: ContextLengths


def model_limits(config: EvalConfig, config_path: Path) -> ModelLimits:
    """Describe each model once (no weights): its revision, its window and the lengths it runs.

    Refuses a device this machine lacks and a length the model cannot take: under ``context_unit: tokens`` the
    longest length plus ``max_new_tokens`` above its maximum; under ``window`` what ``window_lengths`` refuses.
    """
    revisions: dict[str, str] = {}
    windows: dict[str, int | None] = {}
    for index, model_cfg in enumerate(config.models):
        check_device(model_cfg, f"{config_path}: models[{index}]")
        try:
            info = describe_model(model_cfg)
        except EvalkitError as err:  # say which config entry named the model
            raise type(err)(f"{config_path}: models[{index}].name: {err}") from None
        revisions[model_cfg.label] = info.revision
        windows[model_cfg.label] = model_cfg.context_window or info.max_context_tokens
    if config.context_unit == "window":
        return ModelLimits(revisions, window_lengths(config, windows, str(config_path)))
    longest = max(config.context_lengths)
    for index, model_cfg in enumerate(config.models):
        window = windows[model_cfg.label]
        if window is not None and longest + model_cfg.max_new_tokens > window:
            raise ConfigError(
                f"{config_path}: context_lengths: {longest} tokens plus max_new_tokens "
                f"{model_cfg.max_new_tokens} (models[{index}]) exceeds {model_cfg.label}'s maximum of "
                f"{window} tokens; use lengths up to {window - model_cfg.max_new_tokens}"
            )
    return ModelLimits(revisions, token_lengths(config))


def check_model_limits(config: EvalConfig, config_path: Path) -> dict[str, str]:
    """Refuse lengths above a model's maximum (``model_limits``); return {model label: resolved revision}."""
    return model_limits(config, config_path).revisions


def resolve_context_lengths(config: EvalConfig, config_path: Path) -> ContextLengths:
    """Each model's lengths in tokens, describing the models only where the lengths are fractions of their window
    (``evalkit plan``: a token config needs no model files, and no device is checked)."""
    if config.context_unit == "tokens":
        return token_lengths(config)
    windows: dict[str, int | None] = {}
    for index, model_cfg in enumerate(config.models):
        if model_cfg.context_window is None:
            try:
                windows[model_cfg.label] = describe_model(model_cfg).max_context_tokens
            except EvalkitError as err:
                raise type(err)(f"{config_path}: models[{index}].name: {err}") from None
    return window_lengths(config, windows, str(config_path))


def check_device(model_cfg: ModelConfig, where: str) -> None:
    """Refuse a device this machine lacks (``cuda`` without CUDA, ``cuda:99``) before anything loads.

    ``where`` is ``FILE: models[i]``; the schema has already refused names that are no device at all.
    """
    import torch

    field = "device_map" if model_cfg.device_map is not None else "device"
    device = model_cfg.device_map if model_cfg.device_map is not None else model_cfg.device
    if device.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"{where}.{field}: {device!r} but CUDA is not available here (no GPU visible or a "
                              "CPU-only torch); use cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ConfigError(f"{where}.{field}: {device!r} but this machine has {count} CUDA device(s); "
                              f"use cuda:0 to cuda:{count - 1}")
    mps = getattr(torch.backends, "mps", None)
    if device == "mps" and not (mps is not None and mps.is_available()):
        raise ConfigError(f"{where}.{field}: 'mps' is not available here; use cpu or auto")
    check_attention_name(model_cfg, where)
    # auto and the accelerate strategies place the model on CUDA when there is one
    on_cuda = device.startswith("cuda") or (not device.startswith(("cpu", "mps", "xpu")) and torch.cuda.is_available())
    if model_cfg.attn_implementation.startswith("flash_attention") and not on_cuda:
        raise ConfigError(f"{where}.attn_implementation: {model_cfg.attn_implementation!r} runs on CUDA only, "
                          f"not on {device!r}; use sdpa or eager")


def check_attention_name(model_cfg: ModelConfig, where: str) -> None:
    """``attn_implementation`` must be a kernel transformers knows (registered ones included) or a Hub kernel repo."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    name = model_cfg.attn_implementation
    known = ["eager", *(key for key in ALL_ATTENTION_FUNCTIONS.keys() if key != "eager")]
    if name not in known and "/" not in name:  # "org/kernel": a kernel from the Hub's kernels library
        raise ConfigError(f"{where}.attn_implementation: {name!r} is not an attention implementation; "
                          f"use one of {', '.join(known)}")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results, for the run header."""
    import importlib.metadata as md

    # evalkit's own from package_version: with PYTHONPATH=checkout the installed metadata may be another copy's
    versions = {"python": platform.python_version(), "evalkit": package_version()}
    for package in ("torch", "transformers", "accelerate", "tokenizers"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def run_header(
    config: EvalConfig, config_path: Path, revisions: dict[str, str], tasks: dict[str, PreparedTask] | None = None,
    planned: list[Trial] | None = None, lengths: ContextLengths | None = None,
) -> dict[str, Any]:
    """The header written once per run directory (and compared on resume; ``planned`` is updated each call).

    ``task_hashes`` (and ``task_files``) let a rerun refuse a changed task file instead of mixing the new
    task's trials in beside the old ones; ``planned`` lets a report say which trials are missing. Under
    ``context_unit: window``, ``lengths`` gives each model's window and tokens (``RESOLVED_LENGTHS_KEY``).
    """
    tasks = tasks or {}
    extra: dict[str, Any] = {
        "task_hashes": {name: task.spec.content_hash() for name, task in tasks.items()},
        "task_files": {name: str(task.spec.source_path) for name, task in tasks.items() if task.spec.source_path},
    }
    if planned is not None:
        extra["planned"] = planned_cells(planned, config)
    if lengths is not None and lengths.windows:  # absent for token configs: their headers stay as they were
        extra[RESOLVED_LENGTHS_KEY] = lengths.header_row()
    return {
        **extra,
        "evalkit_version": evalkit.__version__,
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        SAMPLES_FREE_HASH_KEY: config_hash_without_samples(config),
        "config_path": str(config_path),
        "seed": config.seed,
        "models": revisions,
        "trust_remote_code": {m.label: m.trust_remote_code for m in config.models},
        "started_at": utc_now(),
        "versions": library_versions(),
        HARDWARE_KEY: hardware_row(hardware_facts()),  # where it ran (not compared on resume)
    }


def planned_cells(trials: list[Trial], config: EvalConfig) -> dict[str, Any]:
    """``{"trials": N, "cells": [...]}``: the planned trials per (model, task, control, layout, length, depth) cell.

    The keys are the record columns a report groups by (``layout`` is the label reports use, depth null
    for controls without a needle position), so a report can mark the cells that lack trials. With mitigation
    arms the cells and ``trials`` are the baseline's (the trials the report's sections show) and ``arms``
    gives each arm's planned trials.
    """
    arms: dict[str, int] = {}
    for t in trials:
        arms[t.mitigation] = arms.get(t.mitigation, 0) + 1
    if len(arms) > 1 and "none" in arms:  # the report's sections (and completeness) count the baseline's trials
        trials = [t for t in trials if t.mitigation == "none"]
    counts: dict[tuple[Any, ...], int] = {}
    for t in trials:
        depth = None if math.isnan(t.depth) else t.depth
        key = (t.model, t.task, t.control, config.layout.label_of(Layout.from_pairs(t.layout)), t.context_length, depth)
        counts[key] = counts.get(key, 0) + 1
    names = ("model", "task", "control", "layout", "context_length", "depth")
    planned: dict[str, Any] = {"trials": len(trials),
                               "cells": [{**dict(zip(names, key)), "trials": n} for key, n in counts.items()]}
    if len(arms) > 1:  # mitigation arms: the cells are the baseline's; each arm plans as many trials
        planned["arms"] = arms
    return planned

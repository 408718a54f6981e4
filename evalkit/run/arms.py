"""Mitigation arms at run time: which heads a ``mask_heads`` arm zeroes, and the hooks around an arm's trials.

The runner runs a model's trials arm by arm (``config.mitigations`` order). An arm that acts inside the model
(``mask_heads``) is attached to the backend before its trials and detached after, with the backend's shared
state (prefix cache) reset both times, so no cache built under one arm serves another. ``top_k`` heads come
from a previous run's attention arrays: the heads with the most copy events (Wu et al. 2024: the head's
strongest key is the needle token being generated), ties broken by mean attention mass on the needle.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from evalkit.attention.heads import attach_head_mask
from evalkit.attention.preflight import model_head_grid
from evalkit.config.mitigations import BASELINE
from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError, RunDirError
from evalkit.run.distributed import current_slot
from evalkit.store.attention_arrays import retrieval_scores
from evalkit.store.format import HEADER_FILE, TRIAL_ID_PATTERN, attention_path, read_header, read_records, records_files
from evalkit.types import Trial


def head_scores(run_dir: str | Path, model: str,
                grid: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """(copy events [layers, heads], mean needle mass [layers, heads], trials read) over a run's arrays of
    ``model``. Only baseline placement trials count (controls have no needle to copy; other arms changed
    the model). Each array must be ``grid`` (the model's layers x heads; without it, the first array's) or the
    file is refused by name."""
    copies = needle = None
    trials = 0
    for path in records_files(run_dir):
        for _, record in read_records(path).records:
            if (record.status != "ok" or record.model != model or record.control or record.mitigation != BASELINE
                    or not TRIAL_ID_PATTERN.fullmatch(record.trial_id)):  # such an id was never given an array
                continue
            array = attention_path(run_dir, record.trial_id)
            if not array.is_file():
                continue
            events, mass = retrieval_scores(array)  # [layers, heads] each
            expected = grid or (copies.shape if copies is not None else None)
            if expected is not None and events.shape != tuple(expected):
                whose = f"{model} has" if grid else "the run's other arrays have"
                raise RunDirError(f"{array}: attention of {events.shape[0]} layers x {events.shape[1]} heads, but "
                                  f"{whose} {expected[0]} x {expected[1]}; rerun that trial (delete its record) or "
                                  f"use another run of {model}")
            copies = events if copies is None else copies + events
            needle = mass if needle is None else needle + mass
            trials += 1
    if copies is None or needle is None:
        raise RunDirError(f"{run_dir}: no attention arrays of baseline trials of {model}; run that model there "
                          "with attention: {capture: true} first")
    return copies, needle / trials, trials


def top_retrieval_heads(run_dir: str | Path, model: str, k: int,
                        grid: tuple[int, int] | None = None) -> list[list[int]]:
    """The ``k`` heads of ``model`` in a run with the most copy events (then the most needle mass), as
    [layer, head] (``grid``: see ``head_scores``)."""
    copies, needle, _ = head_scores(run_dir, model, grid)
    order = np.lexsort((-needle.reshape(-1), -copies.reshape(-1)))  # the last key sorts first
    heads = copies.shape[1]
    if k > order.size:
        raise ConfigError(f"top_k {k} is above the {order.size} heads of {run_dir}'s model; use a smaller top_k")
    return sorted([int(i) // heads, int(i) % heads] for i in order[:k])


def resolve_arm_heads(config: EvalConfig, config_path: str | Path) -> dict[tuple[str, str], list[list[int]]]:
    """(arm name, model) -> the [layer, head] pairs of each ``from_run`` arm, read before the run directory
    exists (``from_run`` is relative to the config file, like ``task_dirs``). Before that, every arm option
    that names heads or layers is checked against each model's (``check_arm_fits``), so ``validate`` refuses
    what ``run`` would, and ``run`` refuses it before writing anything."""
    _check_single_process(config, config_path, current_slot().world_size)
    arms = [(index, arm) for index, arm in enumerate(config.mitigations) if arm.arm in _GRID_ARMS]
    out: dict[tuple[str, str], list[list[int]]] = {}
    for model in config.models if arms else ():
        grid = model_head_grid(model)  # None: a family not built on the meta device (the load checks then)
        for index, arm in arms:
            where = f"{config_path}: mitigations[{index}]"
            if grid is not None:
                check_arm_fits(arm, grid, where, model.label)
            if arm.arm == "mask_heads" and arm.from_run is not None:
                out[(arm.label, model.label)] = _heads_from_run(config.base_dir / Path(arm.from_run).expanduser(),
                                                                arm.top_k, model.label, grid, where)
    return out


def _check_single_process(config: EvalConfig, config_path: str | Path, world_size: int) -> None:
    """Refuse top_k heads from this run when several processes share it: a process could reach the arm before the
    others finish their part of the baseline, and the processes would zero different heads."""
    for index, arm in enumerate(config.mitigations):
        if world_size > 1 and arm.arm == "mask_heads" and arm.from_this_run:
            raise ConfigError(f"{config_path}: mitigations[{index}]: top_k without from_run needs one process "
                              f"(WORLD_SIZE is {world_size}); run the baseline first and give from_run: RUN_DIR")


def heads_for_arm(arm: Any, model: str, run_dir: Path, resolved: dict[tuple[str, str], list[list[int]]]
                  ) -> list[list[int]] | None:
    """The [layer, head] pairs an arm zeroes for ``model``: a ``from_run`` arm's (``resolved`` before the run), or,
    for ``top_k`` without ``from_run``, this run's own baseline arrays (the baseline runs first: see
    ``config.mitigations.check_same_run_heads``); None for arms that name their heads or draw them."""
    if arm.arm != "mask_heads" or not arm.from_this_run:
        return resolved.get((arm.label, model))
    try:
        return top_retrieval_heads(run_dir, model, arm.top_k)
    except (RunDirError, ConfigError) as err:
        raise ConfigError(f"mitigations: {arm.label}: {err}") from None


# arms whose options name layers or heads of the model
_GRID_ARMS = ("mask_heads", "calibrate_attention")


def check_arm_fits(arm: Any, grid: tuple[int, int], where: str, model: str) -> None:
    """ConfigError at ``where`` (``FILE: mitigations[i]``) for a ``heads`` pair, a ``random_k`` or ``top_k``, or a
    calibrated layer that ``model`` (``grid``: its layers x heads per layer) does not have."""
    layers, per_layer = grid
    ranges = f"{model} has layers 0-{layers - 1} and heads 0-{per_layer - 1} ({layers * per_layer} heads)"
    if arm.arm == "calibrate_attention":
        missing = [layer for layer in arm.layers or () if layer >= layers]
        if missing:
            raise ConfigError(f"{where}.layers: {missing} are not layers of {model} (layers 0-{layers - 1}); "
                              f"list layers from 0 to {layers - 1}")
        return
    bad = [list(pair) for pair in arm.heads if not (pair[0] < layers and pair[1] < per_layer)]
    if bad:
        raise ConfigError(f"{where}.heads: {bad} are not in this model: {ranges}; fix the [layer, head] pairs")
    for name in ("random_k", "top_k"):
        if getattr(arm, name) > layers * per_layer:
            raise ConfigError(f"{where}.{name}: {getattr(arm, name)} is above the model's heads: {ranges}; "
                              f"use {name} <= {layers * per_layer}")


def _heads_from_run(run_dir: Path, k: int, model: str, grid: tuple[int, int] | None, where: str) -> list[list[int]]:
    """The ``from_run`` arm's top ``k`` heads of ``model``; every failure is a ConfigError at ``where``."""
    try:
        if not (run_dir / HEADER_FILE).is_file():  # records and arrays copied by hand are no run to trust
            raise RunDirError(f"{run_dir}: not an evalkit run directory: no {HEADER_FILE}; point from_run at a run "
                              f"directory of {model} with attention captured")
        read_header(run_dir)  # a corrupted header is named as such
        return top_retrieval_heads(run_dir, model, k, grid)
    except (RunDirError, ConfigError) as err:
        raise ConfigError(f"{where}.from_run: {err}") from None


def trials_by_arm(trials: list[Trial], config: EvalConfig) -> Iterator[tuple[Any, list[Trial]]]:
    """(arm, its trials in plan order) for each arm of ``config.mitigations`` that has trials."""
    for arm in config.mitigations:
        chosen = [t for t in trials if t.mitigation == arm.label]
        if chosen:
            yield arm, chosen


@contextlib.contextmanager
def arm_attached(backend: Any, arm: Any, heads: list[list[int]] | None) -> Iterator[dict[str, object]]:
    """Attach the arm's in-model hooks while its trials run (``heads``: a ``from_run`` arm's, resolved);
    yields what each of its records adds to ``extra``."""
    if arm.arm != "mask_heads":
        yield {}
        return
    chosen = heads if heads is not None else arm.heads
    attach = functools.partial(attach_head_mask, heads=chosen, random_k=arm.random_k, seed=arm.seed)
    backend.reset()
    handle = backend.attach(attach)
    try:
        yield {"masked_heads": [list(pair) for pair in handle.heads]}
    finally:
        handle.detach()
        backend.reset()

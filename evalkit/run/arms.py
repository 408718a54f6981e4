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
from evalkit.config.mitigations import BASELINE
from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError, RunDirError
from evalkit.store.attention_arrays import copy_events
from evalkit.store.format import attention_path, read_records, read_trial_attention, records_files
from evalkit.types import Trial


def head_scores(run_dir: str | Path, model: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(copy events [layers, heads], mean needle mass [layers, heads], trials read) over a run's arrays of
    ``model``. Only baseline placement trials count (controls have no needle to copy; other arms changed
    the model)."""
    copies = needle = None
    trials = 0
    for path in records_files(run_dir):
        for _, record in read_records(path).records:
            array = attention_path(run_dir, record.trial_id)
            if (record.status != "ok" or record.model != model or record.control or record.mitigation != BASELINE
                    or not array.is_file()):
                continue
            att = read_trial_attention(array)
            events = copy_events(att).sum(axis=2)  # [layers, heads]
            mass = np.nan_to_num(np.nanmean(att.region("needle"), axis=2))  # [layers, heads]
            copies = events if copies is None else copies + events
            needle = mass if needle is None else needle + mass
            trials += 1
    if copies is None or needle is None:
        raise RunDirError(f"{run_dir}: no attention arrays of baseline trials of {model}; run that model there "
                          "with attention: {capture: true} first")
    return copies, needle / trials, trials


def top_retrieval_heads(run_dir: str | Path, model: str, k: int) -> list[list[int]]:
    """The ``k`` heads of ``model`` in a run with the most copy events (then the most needle mass), as
    [layer, head]."""
    copies, needle, _ = head_scores(run_dir, model)
    order = np.lexsort((-needle.reshape(-1), -copies.reshape(-1)))  # the last key sorts first
    heads = copies.shape[1]
    if k > order.size:
        raise ConfigError(f"top_k {k} is above the {order.size} heads of {run_dir}'s model; use a smaller top_k")
    return sorted([int(i) // heads, int(i) % heads] for i in order[:k])


def resolve_arm_heads(config: EvalConfig, config_path: str | Path) -> dict[tuple[str, str], list[list[int]]]:
    """(arm name, model) -> the [layer, head] pairs of each ``from_run`` arm, read before the run directory
    exists (``from_run`` is relative to the config file, like ``task_dirs``)."""
    out: dict[tuple[str, str], list[list[int]]] = {}
    for (index, arm), model in itertools.product(enumerate(config.mitigations), config.models):
        if arm.arm == "mask_heads" and arm.from_run is not None:
            run_dir = config.base_dir / Path(arm.from_run).expanduser()
            try:
                out[(arm.label, model.name)] = top_retrieval_heads(run_dir, model.name, arm.top_k)
            except (RunDirError, ConfigError) as err:
                raise ConfigError(f"{config_path}: mitigations[{index}].from_run: {err}") from None
    return out


def check_single_process(config: EvalConfig, config_path: str | Path, world_size: int) -> None:
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

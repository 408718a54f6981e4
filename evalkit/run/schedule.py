"""Order a model's trials for throughput: prefix-reuse groups, or batches with out-of-memory fallback.

Reuse (``reuse_prefix: true``, the default): trials of one model, task, sample (seed) and context length
share their haystack tokens, so they form a group run in ascending depth on one growing prefix cache
(see ``models/prefix.py``). Batches (``reuse_prefix: false``): trials of one context length run
``batch_size`` at a time; ``auto`` starts from a memory estimate, and any out-of-memory error halves
the batch and reruns the same trials, so none is lost (a single trial that does not fit re-raises).

The runner hands in two callables (build, run and score one trial on a prefix cache; the same for a
batch), so this module knows order and sizes only, not prompts or records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from evalkit.run.memory import free_memory, is_out_of_memory
from evalkit.types import Trial

log = logging.getLogger(__name__)

R = TypeVar("R")
AUTO_MAX_BATCH = 256  # auto never starts above this many prompts per forward
_MEMORY_SHARE = 0.8  # share of free memory auto plans to use (the estimate is rough)


def group_key(trial: Trial) -> tuple[object, ...]:
    """Trials with equal keys share haystack tokens up to their needle: one reuse group.

    Layout and control change the tokens before the needle, so they split groups (``PrefixCache``
    stays correct either way: it keeps only the tokens two prompts really share).
    """
    return (trial.model, trial.task, trial.seed, trial.context_length, trial.layout, trial.control)


def reuse_groups(trials: Sequence[Trial]) -> list[list[Trial]]:
    """Trials grouped by ``group_key`` in first-seen order, each group in ascending depth.

    The needle goes at the sentence boundary nearest ``depth * haystack`` (``prompt.closest_boundary``),
    which never decreases with depth: ascending depth is ascending shared-prefix length.
    """
    groups: dict[tuple[object, ...], list[Trial]] = {}
    for trial in trials:
        groups.setdefault(group_key(trial), []).append(trial)
    return [sorted(group, key=lambda t: t.depth) for group in groups.values()]


def length_groups(trials: Sequence[Trial]) -> list[list[Trial]]:
    """Trials grouped by context length (equal-length prompts batch without padding), shortest first."""
    groups: dict[int, list[Trial]] = {}
    for trial in trials:
        groups.setdefault(trial.context_length, []).append(trial)
    return [groups[length] for length in sorted(groups)]


def run_with_reuse(
    trials: Sequence[Trial], prefix: Any, run_one: Callable[[Trial, Any], R]
) -> Iterator[R]:
    """``run_one(trial, prefix)`` for every trial, group by group; the prefix cache carries over
    (consecutive groups of one task keep at least the shared preamble)."""
    for group in reuse_groups(trials):
        for trial in group:
            yield run_one(trial, prefix)


def run_in_batches(
    trials: Sequence[Trial],
    batch_size: int | str,
    run_many: Callable[[list[Trial]], list[R]],
    start_size: Callable[[int, int], int],
) -> Iterator[R]:
    """``run_many`` over batches of equal context length; an out-of-memory error halves the batch.

    ``batch_size`` is a number or ``"auto"``; ``start_size(context_length, trials)`` gives auto's first
    size. Once halved, a size stays halved for the rest of that length and all longer ones.
    """
    ceiling: int | None = None  # the largest size that has not run out of memory so far
    for group in length_groups(trials):
        size = start_size(group[0].context_length, len(group)) if batch_size == "auto" else int(batch_size)
        size = max(1, min(size, len(group), ceiling or size))
        done = 0
        while done < len(group):
            chunk = group[done : done + size]
            try:
                results = run_many(chunk)
            except Exception as error:  # noqa: BLE001 - only out-of-memory errors are handled, others re-raise
                if not is_out_of_memory(error) or len(chunk) == 1:
                    raise
                free_memory()
                size = ceiling = max(1, len(chunk) // 2)
                log.warning("out of memory with %d prompts of %d tokens: retrying them %d at a time",
                            len(chunk), chunk[0].context_length, size)  # fmt: skip
                continue
            done += len(chunk)
            yield from results


def auto_batch_size(model: Any, device: str, context_length: int, trials: int) -> int:
    """A first batch size from free memory and a per-prompt estimate (KV cache + activations).

    Rough on purpose: an out-of-memory error halves it (``run_in_batches``).
    """
    free = _free_memory_bytes(device)
    config = model.config.get_text_config()
    layers = getattr(config, "num_hidden_layers", 1)
    hidden = getattr(config, "hidden_size", 1024)
    heads = getattr(config, "num_attention_heads", 1)
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    item = next(model.parameters()).element_size()
    kv_bytes = 2 * layers * kv_heads * head_dim * item * context_length
    # the widest activation of one layer (MLP up + gate + input) plus residual copies, all [L, width]
    activation_bytes = (3 * inter + 4 * hidden) * item * context_length
    per_prompt = kv_bytes + activation_bytes
    return max(1, min(trials, AUTO_MAX_BATCH, int(free * _MEMORY_SHARE // per_prompt)))


def _free_memory_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:  # Linux: what the kernel could give without swapping
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3  # unknown: assume 4 GiB

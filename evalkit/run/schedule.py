"""Order a model's trials for throughput: prefix-reuse groups, or batches with out-of-memory fallback.

Reuse (``reuse_prefix: true``, the default): trials of one model, task, sample (seed) and context length
share their haystack tokens, so they form a group run in ascending depth on one growing prefix cache
(see ``models/prefix.py``); each group starts from an empty cache, and a resumed group replays its done
trials first, so results never depend on where a previous run stopped. One trial at a time without reuse
(``batch_size: 1``) runs the same way. Batches (``reuse_prefix: false``): trials of one context length run
``batch_size`` at a time; ``auto`` starts from a memory estimate, and any out-of-memory error halves
the batch and reruns the same trials, so none is lost (a single trial that does not fit re-raises).

The runner hands in two callables (build, run and score one trial on a prefix cache; the same for a
batch), so this module knows order and sizes only, not prompts or records.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from evalkit.models.sizing import AUTO_MAX_BATCH, auto_batch_size
from evalkit.run.memory import free_memory, is_out_of_memory
from evalkit.types import Trial

log = logging.getLogger(__name__)

R = TypeVar("R")
__all__ = [
    "AUTO_MAX_BATCH", "auto_batch_size", "group_key", "length_groups", "reuse_groups", "run_groups_concurrently",
    "run_in_batches", "run_with_reuse",
]  # fmt: skip


def group_key(trial: Trial) -> tuple[object, ...]:
    """Trials with equal keys share haystack tokens up to their needle: one reuse group.

    Layout, control and mitigation arm change the tokens before the needle (or the model), so they split groups (``PrefixCache``
    stays correct either way: it keeps only the tokens two prompts really share).
    """
    return (trial.model, trial.task, trial.seed, trial.context_length, trial.layout, trial.control, trial.mitigation)


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
    trials: Sequence[Trial],
    run_one: Callable[[Trial], R],
    done: Collection[str] = frozenset(),
    replay: Callable[[Trial], None] | None = None,
    start_group: Callable[[], None] | None = None,
) -> Iterator[R]:
    """``run_one(trial)`` for every trial not in ``done`` (trial ids), group by group, in ascending depth.

    A group's trials build on each other (prefix cache, learned answer tail), so every group starts
    afresh (``start_group``) and a group that a previous run left half done first ``replay``s its done
    trials before the first one still to run: each trial then sees exactly the state it would have seen
    in an uninterrupted run, and a resumed run records the same results.
    """
    for group in reuse_groups(trials):
        pending = [i for i, t in enumerate(group) if t.trial_id not in done]
        if not pending:
            continue
        if start_group is not None:
            start_group()
        for trial in group[: pending[-1] + 1]:
            if trial.trial_id not in done:
                yield run_one(trial)
            elif replay is not None:
                replay(trial)


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


def run_groups_concurrently(
    trials: Sequence[Trial], run_one: Callable[[Trial], R], done: Collection[str], workers: int
) -> Iterator[R]:
    """``run_one`` for every trial not in ``done``: each reuse group in ascending depth, ``workers`` groups at once.

    For an engine that keeps its own prefix cache (served): one group's requests go out in order, so each
    finds the previous one's prefix cached, while other groups fill the engine's other slots. Results come
    in completion order (records carry stable ids, so order does not matter to a resume). The first error
    stops the workers after their current trial and is raised here.
    """
    groups = [pending for g in reuse_groups(trials) if (pending := [t for t in g if t.trial_id not in done])]
    if workers <= 1:
        yield from (run_one(t) for g in groups for t in g)
        return
    results: queue.Queue[tuple[bool, object]] = queue.Queue()
    stop = threading.Event()

    def run_group(group: list[Trial]) -> None:
        for trial in group:
            if stop.is_set():
                return
            try:
                results.put((True, run_one(trial)))
            except BaseException as error:  # noqa: BLE001 - handed to the consuming thread, which raises it
                results.put((False, error))
                return

    with ThreadPoolExecutor(max_workers=min(workers, len(groups) or 1)) as pool:
        for group in groups:
            pool.submit(run_group, group)
        try:
            for _ in range(sum(len(g) for g in groups)):
                ok, value = results.get()
                if not ok:
                    raise value  # type: ignore[misc]
                yield value  # type: ignore[misc]
        finally:
            stop.set()  # an error, or a consumer that stopped early: no new trial starts

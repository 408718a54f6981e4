"""Trial ids and sample seeds: what defines a trial, hashed. One definition for the plan that gives the ids
(``run/plan.py``) and the store that checks a record's id against its run's header (``store/run_plan.py``)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any


def _digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def trial_seed(config_seed: int, task: str, sample: int, cell: Sequence[object] | None = None) -> int:
    """Seed of a needle value and haystack stream (a 60-bit non-negative int).

    ``cell`` is None under ``values: per_sample`` (every cell of a sample shares the seed: the seeds of runs from
    before the option stay as they were); under ``per_trial`` it is the trial's ``(context_length, depth)`` (depth
    None for a control without one), so each cell draws its own value.
    """
    payload: dict[str, object] = {"seed": config_seed, "task": task, "sample": sample}
    if cell is not None:
        payload["cell"] = list(cell)
    return int(_digest(payload)[:15], 16)


def trial_variant(control: str, layout_pairs: Sequence[tuple[str, object]],
                  arm_payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """What sets a trial apart beyond its grid cell: its control kind, its layout axes off their default
    (``Layout.id_pairs``) and its mitigation arm's options (None for the baseline); {} when none."""
    pairs = [list(p) for p in layout_pairs]
    variant: dict[str, Any] = {"control": control, "layout": pairs} if control else ({"layout": pairs} if pairs else {})
    if arm_payload is not None:
        variant["mitigation"] = dict(arm_payload)
    return variant


def id_length(control: str, context_length: int) -> int:
    """The context length a trial's id is made of: 0 for the oracle, whose prompt has no haystack and so does not
    depend on the length (the record carries its cell's length; older runs' oracle ids stay as they were)."""
    return 0 if control == "oracle" else context_length


def trial_id(
    *, model: str, revision: str, task: str, task_hash: str, context_length: int, depth: float | None,
    sample: int, config_seed: int, variant: Mapping[str, object] | None = None,
) -> str:
    """16 hex chars of sha256 over what defines a trial (other config fields enter ``config_hash``).

    ``variant`` holds what sets a trial apart beyond the grid cell (a control kind, layout axes off their
    default); it enters the hash only when non-empty, so trials of older configs keep their ids.
    """
    payload: dict[str, object] = {
        "model": model, "revision": revision, "task": task, "task_hash": task_hash,
        "context_length": context_length, "depth": depth, "sample": sample, "seed": config_seed,
    }
    if variant:
        payload["variant"] = dict(variant)
    return _digest(payload)[:16]

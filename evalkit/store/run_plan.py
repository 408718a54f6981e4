"""Which records belong to a run: the grid its header's config plans, and the id each of those trials has.

A records file copied in from another run (``cp runB/trials.jsonl runA/trials.1.jsonl``: another context
length, another seed) would otherwise be read as the run's own: the report would show cells the run never
planned, and resume would count trials it never ran. Every record is checked against the header: its model,
task, arm, control, context length and depth must be a cell of the header's config, and its trial id the id
that cell gets (``config/trial_ids.py``: model revision, task hash and seed from the header). The check needs
the full plan of a run written since plans were recorded (``planned`` in the header); older headers are read
as before. The header's ``planned`` is the last call's (``--limit``), so the config's grid is what counts here.
Under ``context_unit: window`` the config's lengths are fractions: each model's lengths in tokens are the header's
``RESOLVED_LENGTHS_KEY`` (its window and tokens), and a record's ``context_fraction`` must be its config entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.config.layouts import Layout, LayoutGrid
from evalkit.config.trial_ids import id_length, trial_id, trial_variant
from evalkit.errors import RunDirError
from evalkit.types import TrialRecord

_DEPTH_CONTROLS = ("", "dummy_needle")  # kinds with a needle position (the others have depth NaN)
# the header key of a window config's lengths: {model: {"window": tokens, "tokens": [one per config length]}}
RESOLVED_LENGTHS_KEY = "resolved_lengths"


@dataclass(frozen=True)
class HeaderPlan:
    """The trials a run's header allows: its config's grid and what each trial id is made of."""

    revisions: dict[str, str]  # model -> revision (header ``models``)
    task_hashes: dict[str, str]
    seed: int
    samples: int
    layouts: tuple[Layout, ...]
    lengths: dict[str, dict[int, float | None]]  # model -> its lengths in tokens -> the fraction (None: tokens)
    depths: tuple[float, ...]
    controls: tuple[str, ...]
    arms: dict[str, dict[str, Any] | None]  # arm label -> what it adds to a trial id (None: the baseline)


def header_plan(header: dict[str, Any]) -> HeaderPlan | None:
    """The plan of a header written with one (``planned``); None for an older or hand-written header."""
    config = header.get("config")
    if not (isinstance(header.get("planned"), dict) and isinstance(config, dict)):
        return None
    try:
        arms: dict[str, dict[str, Any] | None] = {}
        for arm in config.get("mitigations") or [{"arm": "none"}]:
            payload = {k: v for k, v in arm.items() if k != "name"}
            arms[arm.get("name") or arm["arm"]] = None if arm["arm"] == "none" else payload
        layouts = tuple(LayoutGrid.model_validate(config.get("layout") or {}).layouts())
        return HeaderPlan(dict(header["models"]), dict(header["task_hashes"]), int(header["seed"]),
                          int(config["samples"]), layouts, _model_lengths(header, config),
                          tuple(float(x) for x in config["depths"]), tuple(config.get("controls") or ()), arms)
    except (KeyError, TypeError, ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        return None  # a header from another version: nothing to check against


def _model_lengths(header: dict[str, Any], config: dict[str, Any]) -> dict[str, dict[int, float | None]]:
    """Each model's lengths in tokens with their fractions: the config's own, or the header's resolved ones."""
    if config.get("context_unit", "tokens") == "tokens":
        return {model: {int(x): None for x in config["context_lengths"]} for model in header["models"]}
    resolved = header[RESOLVED_LENGTHS_KEY]
    return {model: dict(zip((int(t) for t in resolved[model]["tokens"]), map(float, config["context_lengths"])))
            for model in header["models"]}


def outside_plan(record: TrialRecord, plan: HeaderPlan) -> str:
    """Why ``record`` is not a trial of ``plan`` ("" when it is one)."""
    depth = None if math.isnan(record.depth) else record.depth
    wants_depth = record.control in _DEPTH_CONTROLS
    lengths = plan.lengths.get(record.model, {})
    layout = Layout(**{axis: getattr(record, axis) for axis in Layout.__dataclass_fields__})
    checks = (
        (record.model in plan.revisions, f"model {record.model!r} is not one of {sorted(plan.revisions)}"),
        (record.task in plan.task_hashes, f"task {record.task!r} is not one of {sorted(plan.task_hashes)}"),
        (record.mitigation in plan.arms, f"mitigation {record.mitigation!r} is not one of {list(plan.arms)}"),
        (record.control in ("", *plan.controls), f"control {record.control!r} is not one of {list(plan.controls)}"),
        # an oracle record written before oracles carried their cell's length has 0
        (record.context_length in lengths or (record.control == "oracle" and record.context_length == 0),
         f"context_length {record.context_length} is not one of {list(lengths)}"),
        (lengths.get(record.context_length, record.context_fraction) == record.context_fraction,
         f"context_fraction {record.context_fraction} is not {lengths.get(record.context_length)}, the fraction of "
         f"{record.context_length} tokens"),
        (depth in plan.depths if wants_depth else depth is None,
         f"depth {record.depth} is not one of {list(plan.depths)}" if wants_depth else f"depth {record.depth} "
         f"for a {record.control} control"),
        (0 <= record.sample < plan.samples, f"sample {record.sample} is not below samples {plan.samples}"),
        (layout in plan.layouts, f"layout {layout.label()!r} is not one of this run's layouts"),
    )
    for ok, reason in checks:
        if not ok:
            return reason
    variant = trial_variant(record.control, layout.id_pairs(), plan.arms[record.mitigation])
    expected = trial_id(model=record.model, revision=plan.revisions[record.model], task=record.task,
                        task_hash=plan.task_hashes[record.task],
                        context_length=id_length(record.control, record.context_length), depth=depth,
                        sample=record.sample, config_seed=plan.seed, variant=variant or None)
    if record.trial_id != expected:
        return (f"trial_id {record.trial_id!r} is not the id this run gives that trial ({expected}: another seed, "
                "task version, model revision or arm option)")
    return ""


def check_in_plan(path: Path, line: int, record: TrialRecord, plan: HeaderPlan | None) -> None:
    """RunDirError naming ``path:line`` when ``record`` is not a trial of its run's header's plan."""
    reason = "" if plan is None else outside_plan(record, plan)
    if reason:
        raise RunDirError(f"{path}:{line}: not a trial of this run's header ({reason}); another run's records were "
                          f"put here: move {path.name} out of {path.parent} (or into its own run directory)")

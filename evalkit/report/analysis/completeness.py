"""Planned against recorded trials: the cells of an incomplete (or still running) run that lack trials.

A run's header holds ``planned`` (``evalkit/run/preflight.py``: the trials per model, task, control, layout,
length and depth cell of the plan its last call ran); records are counted in the same cells. Headers
written before plans were recorded (schema 1) have none: then nothing is known to be missing.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from evalkit.config.trial_ids import id_length
from evalkit.report.data.labels import control_labels, layout_labels

CELL_KEYS = ("model", "task", "control", "layout", "context_length", "depth")
MISSING_COLUMNS = (*CELL_KEYS, "recorded", "planned")


def planned_trials(header: dict[str, Any]) -> int | None:
    """How many trials the run's header says were planned; None when it does not say."""
    planned = header.get("planned")
    trials = planned.get("trials") if isinstance(planned, dict) else None
    return trials if isinstance(trials, int) and not isinstance(trials, bool) else None


def _id_length(control: str, length: object) -> int:
    # an oracle has one prompt for every length: its records count in its cell whatever length they carry (runs
    # from before oracles carried their cell's length recorded 0)
    return id_length(control, int(length))  # type: ignore[call-overload]


def missing_cells(rows: pd.DataFrame, header: dict[str, Any]) -> pd.DataFrame:
    """Cells of the header's plan with fewer records than planned: ``MISSING_COLUMNS``, plan order.

    ``rows`` are one run's records (``load_results``); a skipped trial is recorded, so it is not missing.
    """
    planned = header.get("planned")
    cells = planned.get("cells") if isinstance(planned, dict) else None
    if not isinstance(cells, list):
        return pd.DataFrame(columns=list(MISSING_COLUMNS))
    recorded: dict[tuple[Any, ...], int] = {}
    keys = zip(rows["model"].astype("str"), rows["task"].astype("str"), control_labels(rows), layout_labels(rows),
               rows["context_length"], rows["depth"])
    for model, task, control, layout, length, depth in keys:
        key = (model, task, control, layout, _id_length(control, length), None if pd.isna(depth) else float(depth))
        recorded[key] = recorded.get(key, 0) + 1
    out = []
    for cell in cells:
        if not isinstance(cell, dict):
            continue
        depth = cell.get("depth")
        key = (str(cell.get("model")), str(cell.get("task")), str(cell.get("control") or ""),
               str(cell.get("layout") or ""), int(cell.get("context_length") or 0),
               None if depth is None or (isinstance(depth, float) and math.isnan(depth)) else float(depth))
        want, have = int(cell.get("trials") or 0), recorded.get((*key[:4], _id_length(key[2], key[4]), key[5]), 0)
        if have < want:
            out.append((*key, have, want))
    return pd.DataFrame(out, columns=list(MISSING_COLUMNS))

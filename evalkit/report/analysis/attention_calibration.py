"""Needle attention calibrated by the dummy needle (Hsieh et al. 2024, "Found in the Middle").

Part of a position's attention is positional bias, whatever the text there says. The ``dummy_needle``
control (``evalkit/prompt/controls.py``) puts a content-free sentence of the needle's token length at the
needle's position in the same haystack; its mass is the bias at that position. Needle mass minus dummy
mass is what the model pays the fact for its content. Pairs are matched on model, task, layout,
context length, depth and sample: the same text around both.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.report.analysis.attention import mean_interval
from evalkit.store.attention_arrays import attention_for_records
from evalkit.report.data.labels import control_labels, layout_labels

PAIR_KEYS = ["model", "task", "layout", "context_length", "depth", "sample"]
CALIBRATION_COLUMNS = ["model", "task", "context_length", "depth", "n", "needle_mass", "dummy_mass",
                       "difference", "diff_low", "diff_high"]


def _row0_needle_mass(records: pd.DataFrame) -> pd.DataFrame:
    """``records`` with ``mass``: needle-region mass of row 0 (mean over layers and heads); rows without arrays dropped."""
    arrays = attention_for_records(records)
    masses = [float(np.nanmean(a.region("needle")[:, :, 0])) if a is not None else np.nan for a in arrays]
    frame = records.assign(mass=masses, layout=layout_labels(records).to_numpy())
    return frame[frame["mass"].notna().to_numpy()]


def dummy_calibration_table(records: pd.DataFrame) -> pd.DataFrame:
    """Per model, task, length and depth: needle mass, dummy mass and their paired difference (95% t interval).

    Empty (with ``CALIBRATION_COLUMNS``) when the runs hold no dummy-needle trials with attention arrays.
    """
    ok = records[(records["status"] == "ok").to_numpy()]
    labels = control_labels(ok)
    dummy = ok[(labels == "dummy_needle").to_numpy()]
    if dummy.empty:
        return pd.DataFrame(columns=CALIBRATION_COLUMNS)
    placed = _row0_needle_mass(ok[(labels == "").to_numpy()])
    dummy = _row0_needle_mass(dummy)
    pairs = placed[PAIR_KEYS + ["mass"]].merge(dummy[PAIR_KEYS + ["mass"]], on=PAIR_KEYS, suffixes=("", "_dummy"))
    rows = []
    for key, cell in pairs.groupby(["model", "task", "context_length", "depth"], sort=True):
        diff, low, high = mean_interval(cell["mass"] - cell["mass_dummy"])
        rows.append((*key, len(cell), float(cell["mass"].mean()), float(cell["mass_dummy"].mean()), diff, low, high))
    return pd.DataFrame(rows, columns=CALIBRATION_COLUMNS)

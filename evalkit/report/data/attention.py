"""Captured attention of run directories as long DataFrames: ``load_attention``, ``load_attention_argmax``.

Reads the records through ``load_results`` and each trial's arrays through ``evalkit/store/format.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from evalkit.errors import RunDirError
from evalkit.report.data.load import load_results
from evalkit.store.attention_arrays import attention_for_records, copy_events
from evalkit.types import TrialAttention

# record columns copied onto every row of the long tables
TRIAL_COLUMNS = ("trial_id", "run_dir", "model", "task", "context_length", "prompt_tokens", "depth",
                 "achieved_depth", "sample", "correct")


def _with_attention(paths) -> tuple[pd.DataFrame, list[TrialAttention]]:
    records = load_results(paths)
    arrays = attention_for_records(records)
    keep = [a is not None for a in arrays]
    if not any(keep):
        raise RunDirError(f"{paths}: no attention arrays found; run with `attention: {{capture: true}}` in the config")
    return records[keep].reset_index(drop=True), [a for a in arrays if a is not None]


def _long(records: pd.DataFrame, values: dict[str, list[np.ndarray]], shapes: list[tuple[int, ...]],
          names: tuple[str, ...]) -> pd.DataFrame:
    """Broadcast trial columns and index columns over flattened per-trial arrays."""
    columns: dict[str, object] = {}
    counts = [int(np.prod(s)) for s in shapes]
    for name in TRIAL_COLUMNS:
        columns[name] = np.repeat(records[name].to_numpy(), counts)
    index = [np.indices(s).reshape(len(s), -1) for s in shapes]
    for axis, name in enumerate(names):
        columns[name] = np.concatenate([i[axis] for i in index])
    for name, parts in values.items():
        columns[name] = np.concatenate([p.reshape(-1) for p in parts])
    frame = pd.DataFrame(columns)
    for name in ("trial_id", "run_dir", "model", "task"):
        frame[name] = frame[name].astype("category")
    return frame


def load_attention(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Captured attention of one or more run directories as a long DataFrame: one row per
    trial x layer x head x row x region.

    Columns: ``trial_id``, ``run_dir``, ``model``, ``task`` (category); ``context_length``, ``prompt_tokens``,
    ``sample`` (int); ``depth``, ``achieved_depth`` (float); ``correct`` (bool) from the trial's record;
    ``layer``, ``head``, ``row`` (int; row 0 = last prompt token, row k = decode step feeding generated token
    k - 1); ``region`` (category: sink, preamble, context_before, needle, context_after, question, generated,
    remainder, bin_00 ...); ``mass`` (float32, attention probability, NaN for a row never reached);
    ``region_token_start``, ``region_token_end`` (int, -1 for remainder); ``partition`` (bool: the regions
    that, with ``remainder``, sum to 1 per layer, head and row; bins split the haystack and overlap them).
    Only trials with a record and an array are included; RunDirError when there are none.
    """
    records, arrays = _with_attention(paths)
    masses, starts, ends, partition, shapes, names_per_trial = [], [], [], [], [], []
    for att in arrays:
        layers, heads, rows, regions = att.mass.shape
        mass = np.concatenate([att.mass, att.remainder[..., None]], -1)  # [layers, heads, rows, regions + 1]
        spans = np.concatenate([att.spans, [[-1, -1]]])
        masses.append(mass)
        starts.append(np.broadcast_to(spans[:, 0], mass.shape))
        ends.append(np.broadcast_to(spans[:, 1], mass.shape))
        flags = np.arange(regions + 1) < att.partition_size
        flags[-1] = True
        partition.append(np.broadcast_to(flags, mass.shape))
        shapes.append(mass.shape)
        names_per_trial.append(np.broadcast_to(np.array([*att.region_names, "remainder"]), mass.shape))
    frame = _long(records, {"mass": masses, "region_token_start": starts, "region_token_end": ends,
                                    "partition": partition, "region": names_per_trial},
                  shapes, ("layer", "head", "row", "region_index"))
    order = list(dict.fromkeys(n for a in arrays for n in (*a.region_names[: a.partition_size], "remainder",
                                                           *a.region_names[a.partition_size:])))
    frame["region"] = pd.Categorical(frame["region"], categories=order)
    return frame.drop(columns="region_index")


def load_attention_argmax(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Each captured row's strongest key per layer and head: one row per trial x layer x head x row.

    Columns: the trial columns of ``load_attention``, ``layer``, ``head``, ``row``, ``argmax_position`` and
    ``argmax_token`` (-1: row not reached), ``row_token`` (the token this row predicts, -1: none),
    ``row_in_needle`` (that token occurs in the needle), ``argmax_in_needle`` and ``copies_needle`` (the head's
    strongest key is in the needle and holds the very token being generated: Wu et al. 2024's copy event).
    """
    records, arrays = _with_attention(paths)
    values: dict[str, list[np.ndarray]] = {k: [] for k in ("argmax_position", "argmax_token", "row_token",
                                                         "row_in_needle", "argmax_in_needle", "copies_needle")}
    for att in arrays:
        shape = att.argmax_position.shape
        copy = copy_events(att)
        start, end = att.spans[att.region_names.index("needle")]
        values["argmax_position"].append(att.argmax_position)
        values["argmax_token"].append(att.argmax_token)
        values["row_token"].append(np.broadcast_to(att.row_token, shape))
        values["row_in_needle"].append(np.broadcast_to(att.row_in_needle, shape))
        values["argmax_in_needle"].append((att.argmax_position >= start) & (att.argmax_position < end))
        values["copies_needle"].append(copy)
    return _long(records, values, [a.argmax_position.shape for a in arrays], ("layer", "head", "row"))

"""Attention arrays in the run directory: one ``attention/<trial_id>.npz`` per trial, and their loaders.

Each file is written atomically (temporary file, fsync, rename) before the trial's record is appended, so a
record always has its array; a run killed in between leaves an array without a record, which the resumed run
overwrites when it redoes the trial, and which loaders ignore (they start from the records).

Arrays of one file (``np.load(path)``, no pickle)::

    mass            float32 [layers, heads, rows, regions]   attention mass of each row on each region
    remainder       float32 [layers, heads, rows]            1 - sum over the partition regions
    argmax_position int32   [layers, heads, rows]            key position of the row's largest weight (-1: none)
    argmax_token    int32   [layers, heads, rows]            token id at that position (-1: none)
    row_token       int32   [rows]                           token the row predicts (generated[row]; -1: none)
    row_in_needle   bool    [rows]                           row_token occurs among the needle's tokens
    region_names    str     [regions]                        see evalkit/attention/regions.py
    spans           int32   [regions, 2]                     [start, end) token positions of each region
    bins, prompt_tokens int
    token_mass      float16 [stored layers, rows, prompt_tokens]  only with ``attention.tokens: true``: each row's
                    mass on every prompt token, mean over heads (summed over a region's tokens: that region's
                    ``mass`` averaged over heads, up to float16 rounding)
    token_layers    int32   [stored layers]          the layers of ``token_mass``

Rows: 0 is the last prompt token (the step that produces the first answer token), row k >= 1 the decode step
that feeds generated token k - 1. A row the trial never reached (generation stopped first) is NaN / -1.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from evalkit.errors import RunDirError

if TYPE_CHECKING:
    import pandas as pd

ATTENTION_DIR = "attention"
_TRIAL_ID = re.compile(r"[A-Za-z0-9_.-]+")
# record columns copied onto every row of the long tables
TRIAL_COLUMNS = ("trial_id", "run_dir", "model", "task", "context_length", "prompt_tokens", "depth",
                 "achieved_depth", "sample", "correct")


@dataclass(frozen=True, eq=False)
class TrialAttention:
    """One trial's captured attention (the arrays of its ``.npz``; shapes in the module docstring)."""

    mass: np.ndarray
    remainder: np.ndarray
    argmax_position: np.ndarray
    argmax_token: np.ndarray
    row_token: np.ndarray
    row_in_needle: np.ndarray
    region_names: tuple[str, ...]
    spans: np.ndarray
    bins: int
    prompt_tokens: int
    token_mass: np.ndarray | None = None  # float16 [stored layers, rows, prompt_tokens], attention.tokens only
    token_layers: tuple[int, ...] = ()

    @property
    def partition_size(self) -> int:
        """How many leading regions tile the keys (the remaining ``bins`` overlap them)."""
        return len(self.region_names) - self.bins

    def region(self, name: str) -> np.ndarray:
        """Mass on region ``name``: [layers, heads, rows]."""
        return self.mass[..., self.region_names.index(name)]


def attention_path(run_dir: str | Path, trial_id: str) -> Path:
    """``RUN_DIR/attention/<trial_id>.npz`` (refuses ids that are not plain file names)."""
    if not _TRIAL_ID.fullmatch(trial_id):
        raise ValueError(f"trial id {trial_id!r} is not a plain file name")
    return Path(run_dir) / ATTENTION_DIR / f"{trial_id}.npz"


def save_trial_attention(run_dir: str | Path, trial_id: str, attention: TrialAttention) -> Path:
    """Write one trial's arrays atomically (replacing an earlier file of the same trial); return the path."""
    path = attention_path(run_dir, trial_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    tokens = {} if attention.token_mass is None else {
        "token_mass": attention.token_mass.astype(np.float16),
        "token_layers": np.array(attention.token_layers, dtype=np.int32)}
    np.savez_compressed(
        buffer, mass=attention.mass.astype(np.float32), remainder=attention.remainder.astype(np.float32),
        argmax_position=attention.argmax_position.astype(np.int32),
        argmax_token=attention.argmax_token.astype(np.int32), row_token=attention.row_token.astype(np.int32),
        row_in_needle=attention.row_in_needle.astype(bool), region_names=np.array(attention.region_names),
        spans=attention.spans.astype(np.int32), bins=np.int64(attention.bins),
        prompt_tokens=np.int64(attention.prompt_tokens), **tokens,
    )  # fmt: skip
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(buffer.getvalue())
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read_trial_attention(path: str | Path) -> TrialAttention:
    """Read one ``.npz`` written by ``save_trial_attention``; RunDirError if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return TrialAttention(
                mass=data["mass"], remainder=data["remainder"], argmax_position=data["argmax_position"],
                argmax_token=data["argmax_token"], row_token=data["row_token"], row_in_needle=data["row_in_needle"],
                region_names=tuple(str(n) for n in data["region_names"]), spans=data["spans"],
                bins=int(data["bins"]), prompt_tokens=int(data["prompt_tokens"]),
                token_mass=data["token_mass"] if "token_mass" in data.files else None,
                token_layers=tuple(int(x) for x in data["token_layers"]) if "token_layers" in data.files else (),
            )  # fmt: skip
    except (OSError, KeyError, ValueError) as err:
        raise RunDirError(f"{path}: unreadable attention array ({err}); rerun that trial (delete its record)") from None


def attention_for_records(records: pd.DataFrame) -> list[TrialAttention | None]:
    """The arrays of each record row (in order), None where a trial has none (capture off, or skipped)."""
    out: list[TrialAttention | None] = []
    for run_dir, trial_id, status in zip(records["run_dir"], records["trial_id"], records["status"]):
        if status != "ok" or not _TRIAL_ID.fullmatch(str(trial_id)):  # such an id was never given an array
            out.append(None)
            continue
        path = attention_path(run_dir, str(trial_id))
        out.append(read_trial_attention(path) if path.is_file() else None)
    return out


def _with_attention(paths) -> tuple[pd.DataFrame, list[TrialAttention]]:
    from evalkit.report.data.load import load_results

    records = load_results(paths)
    arrays = attention_for_records(records)
    keep = [a is not None for a in arrays]
    if not any(keep):
        raise RunDirError(f"{paths}: no attention arrays found; run with `attention: {{capture: true}}` in the config")
    return records[keep].reset_index(drop=True), [a for a in arrays if a is not None]


def _long(records: pd.DataFrame, values: dict[str, list[np.ndarray]], shapes: list[tuple[int, ...]],
          names: tuple[str, ...]) -> pd.DataFrame:
    """Broadcast trial columns and index columns over flattened per-trial arrays."""
    import pandas as pd  # noqa: F811 (the module-level name is for type checking only)

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
    import pandas as pd

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


def copy_events(att: TrialAttention) -> np.ndarray:
    """[layers, heads, rows] bool: the row predicts a needle token and the head's strongest key is that same
    token inside the needle (a copy-paste event in the sense of Wu et al. 2024)."""
    start, end = att.spans[att.region_names.index("needle")]
    in_needle = (att.argmax_position >= start) & (att.argmax_position < end)
    same = (att.argmax_token == att.row_token[None, None, :]) & (att.row_token >= 0)[None, None, :]
    return in_needle & same & att.row_in_needle[None, None, :]

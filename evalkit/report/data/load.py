"""Read run directories into a pandas DataFrame: one row per trial record.

A run directory (see ``evalkit/store/run_store.py``) holds ``header.json`` and one or more records files
``trials*.jsonl`` (``trials.jsonl`` plus ``trials.<rank>.jsonl`` from several processes). Reports
read only these files.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from evalkit.errors import RunDirError
from evalkit.types import TrialRecord

log = logging.getLogger(__name__)

HEADER_FILE = "header.json"
RECORDS_GLOB = "trials*.jsonl"

# TrialRecord field -> pandas dtype; annotations are strings (``from __future__ import annotations``).
_DTYPE_OF_ANNOTATION = {"int": "int64", "float": "float64", "bool": "bool", "str": "str"}
RECORD_DTYPES: dict[str, str] = {
    f.name: _DTYPE_OF_ANNOTATION.get(str(f.type), "object") for f in dataclasses.fields(TrialRecord)
}
RECORD_COLUMNS: tuple[str, ...] = tuple(RECORD_DTYPES)
RUN_COLUMNS: tuple[str, ...] = ("run_dir", "config_hash")
COLUMNS: tuple[str, ...] = RECORD_COLUMNS + RUN_COLUMNS
_REQUIRED = tuple(
    f.name
    for f in dataclasses.fields(TrialRecord)
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
)
_DEFAULTS: dict[str, Any] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory)
    for f in dataclasses.fields(TrialRecord)
    if f.name not in _REQUIRED
}


def load_header(run_dir: str | Path) -> dict[str, Any]:
    """Return the parsed ``RUN_DIR/header.json`` (config, config_hash, seed, versions, models, ...)."""
    path = Path(run_dir) / HEADER_FILE
    if not path.is_file():
        raise RunDirError(
            f"{run_dir}: no {HEADER_FILE}; is this an evalkit run directory? run `evalkit run CONFIG` first"
        )
    try:
        header = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RunDirError(f"{path}: unreadable header ({err}); rerun into a new output_dir") from None
    if not isinstance(header, dict):
        raise RunDirError(f"{path}: expected a JSON object, found {type(header).__name__}")
    return header


def load_results(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Load the trial records of one or more run directories into one DataFrame.

    ``paths`` is a run directory, a single records file inside one, or a sequence of either.
    Within a run directory ``trials.jsonl`` is read first, then ``trials.<rank>.jsonl`` by rank;
    a trial id recorded twice keeps its last record. Unparsable lines (a torn last line left by a
    killed process) are skipped with a logged warning. Runs are not merged: the same trial id in
    two run directories gives two rows, told apart by ``run_dir``.

    Columns (one row per trial; skipped trials are kept, see ``status``):

    - ``trial_id`` (str), ``status`` (str: "ok" or "skipped"), ``skip_reason`` (str)
    - ``model``, ``model_revision``, ``task`` (str)
    - ``context_length`` (int, requested prompt tokens), ``prompt_tokens`` (int, achieved),
      ``length_tolerance_tokens`` (int)
    - ``depth`` (float, requested fraction of the haystack before the needle),
      ``achieved_depth`` (float)
    - ``sample``, ``seed`` (int)
    - ``needle``, ``question``, ``gold_answer``, ``generated``, ``prompt_sha256`` (str)
    - ``correct``, ``exact_match``, ``gold_first_token_is_argmax`` (bool)
    - ``gold_logprob_sum``, ``gold_logprob_mean`` (float), ``gold_tokens`` (int)
    - ``regions`` (object: dict name -> [token_start, token_end]),
      ``needle_token_start``, ``needle_token_end`` (int)
    - ``elapsed_s`` (float), ``extra`` (object: dict; reports read ``extra["control"]``, e.g.
      "closed_book" or "oracle", and ``extra["layout"]``: see ``control_labels`` and ``add_variants``)
    - ``run_dir`` (str, the directory as given), ``config_hash`` (str, from its header)

    An int or bool column holding a null becomes pandas' nullable ``Int64`` / ``boolean``.
    Raises ``RunDirError`` when a path holds no records.
    """
    frames = [_load_run(run_dir, files) for run_dir, files in _resolve(paths)]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def _resolve(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[tuple[Path, list[Path]]]:
    """Map each given path to (run directory, its records files in read order)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise RunDirError("load_results: no run directory given; pass RUN_DIR (see `evalkit run CONFIG`)")
    runs = []
    for item in items:
        path = Path(item)
        if path.is_file():
            runs.append((path.parent, [path]))
            continue
        if not path.is_dir():
            raise RunDirError(f"{path}: no such run directory; run `evalkit run CONFIG` first")
        files = sorted(path.glob(RECORDS_GLOB), key=_read_order)
        if not files:
            raise RunDirError(f"{path}: no trials*.jsonl found; run `evalkit run CONFIG` first")
        runs.append((path, files))
    return runs


def _read_order(path: Path) -> tuple[int, int, str]:
    """``trials.jsonl`` first, then ``trials.<rank>.jsonl`` by numeric rank, then anything else."""
    if path.name == "trials.jsonl":
        return (0, 0, "")
    match = re.fullmatch(r"trials\.(\d+)\.jsonl", path.name)
    if match:
        return (1, int(match.group(1)), "")
    return (2, 0, path.name)


def _load_run(run_dir: Path, files: list[Path]) -> pd.DataFrame:
    """One run directory's records, deduplicated by trial id (last wins), with run columns."""
    header = load_header(run_dir)
    by_id: dict[str, dict[str, Any]] = {}
    for path in files:
        for line_number, record in _read_records(path):
            row = _complete(record, path, line_number)
            by_id.pop(row["trial_id"], None)  # re-insert so the row order follows the last record
            by_id[row["trial_id"]] = row
    if not by_id:
        names = ", ".join(p.name for p in files)
        raise RunDirError(
            f"{run_dir}: {names} hold no complete trial records yet; run `evalkit run CONFIG` first"
        )
    rows = list(by_id.values())
    for row in rows:
        row["run_dir"] = str(run_dir)
        row["config_hash"] = str(header.get("config_hash", ""))
    return _typed(pd.DataFrame.from_records(rows, columns=list(COLUMNS)))


def _read_records(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The parsable JSON object lines of ``path`` with their 1-based line numbers."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    records = []
    for index, raw in enumerate(lines):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            record = None
        if not isinstance(record, dict):
            # a last line without its newline is a write killed half-way (the store cuts it on resume)
            torn = index == len(lines) - 1
            what = "torn last line (partial write)" if torn else "unparsable line"
            log.warning("%s:%d: %s skipped", path, index + 1, what)
            continue
        records.append((index + 1, record))
    return records


def _complete(record: dict[str, Any], path: Path, line_number: int) -> dict[str, Any]:
    """Check required fields, fill defaulted ones, drop keys that are not TrialRecord fields."""
    missing = [name for name in _REQUIRED if name not in record]
    if missing:
        raise RunDirError(
            f"{path}:{line_number}: record lacks {', '.join(missing)}; was it written by another "
            "evalkit version? rerun with `evalkit run CONFIG` into a new output_dir"
        )
    row = {name: record[name] for name in RECORD_COLUMNS if name in record}
    for name, default in _DEFAULTS.items():
        if name not in row:
            row[name] = default() if callable(default) else default
    return row


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    """Cast record columns to their declared dtypes (nullable variants where nulls occur)."""
    for name, dtype in RECORD_DTYPES.items():
        column = frame[name]
        if dtype == "int64":
            frame[name] = column.astype("Int64" if column.isna().any() else "int64")
        elif dtype == "bool":
            frame[name] = column.astype("boolean" if column.isna().any() else "bool")
        elif dtype in ("float64", "str"):
            frame[name] = column.astype(dtype)
    for name in RUN_COLUMNS:
        frame[name] = frame[name].astype("str")
    return frame

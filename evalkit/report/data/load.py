"""Read run directories into a pandas DataFrame: one row per trial record.

A run directory holds ``header.json`` and one or more records files ``trials*.jsonl`` (``trials.jsonl``
plus ``trials.<rank>.jsonl`` from several processes); ``evalkit/store/format.py`` owns that format and
every line is read through it (older schemas upgraded, invalid lines skipped with a warning, as resume
does). Reports read only these files.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import ValidationError

from evalkit.errors import RunDirError
from evalkit.config.layouts import Layout, LayoutGrid
from evalkit.store.format import read_header, read_records, records_files
from evalkit.store.run_plan import check_in_plan, header_plan
from evalkit.types import TrialRecord

log = logging.getLogger(__name__)

LAYOUT_AXES: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Layout))


def _dtype(annotation: str) -> str:
    """pandas dtype of a TrialRecord annotation (strings: ``from __future__ import annotations``)."""
    parts = [p.strip() for p in annotation.split("|")]
    base = next(p for p in parts if p != "None")
    if base == "bool":
        return "object" if "None" in parts else "bool"  # a tri-state axis keeps its None
    return {"int": "int64", "float": "float64", "str": "str"}.get(base, "object")


RECORD_DTYPES: dict[str, str] = {f.name: _dtype(str(f.type)) for f in dataclasses.fields(TrialRecord)}
RECORD_COLUMNS: tuple[str, ...] = tuple(RECORD_DTYPES)
DERIVED_COLUMNS: tuple[str, ...] = ("layout",)  # the layout's label, from its axes and the header's grid
RUN_COLUMNS: tuple[str, ...] = ("run_dir", "config_hash")
COLUMNS: tuple[str, ...] = RECORD_COLUMNS + DERIVED_COLUMNS + RUN_COLUMNS


def load_header(run_dir: str | Path) -> dict[str, Any]:
    """Return the parsed ``RUN_DIR/header.json`` (config, config_hash, seed, versions, models, ...)."""
    return read_header(run_dir)


def load_results(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> pd.DataFrame:
    """Load the trial records of one or more run directories into one DataFrame.

    ``paths`` is a run directory, a single records file inside one, or a sequence of either (one run
    directory given twice is refused: its trials would count twice).
    Within a run directory ``trials.jsonl`` is read first, then ``trials.<rank>.jsonl`` by rank;
    a trial id recorded twice keeps its last record. A torn last line (left by a killed process) is
    skipped with a logged warning; any other line that is not a valid record (corrupted, a field of the
    wrong type) is a RunDirError naming file and line, as it is for a resumed run. Runs are not merged: the same trial id in
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
    - ``elapsed_s`` (float)
    - grid axes: ``control`` (str: "" for a placement trial, else "closed_book", "oracle", "dummy_needle"),
      the layout axes ``question_position``, ``instruction_position``, ``context_markers`` (str),
      ``chat_template``, ``system_prompt`` (object: True, False or None), ``answer_prefix`` (bool), and
      ``layout`` (str: the layout's label when the run varied its layout, else "")
    - ``gold_document_index``, ``documents_total`` (Int64: document tasks, else null)
    - ``extra`` (object: dict of what one task kind adds, e.g. ``recall``), ``schema_version`` (int)
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
        files = records_files(path)
        if not files:
            raise RunDirError(f"{path}: no trials*.jsonl found; run `evalkit run CONFIG` first")
        runs.append((path, files))
    _refuse_repeats(items, runs)
    return runs


def _refuse_repeats(items: list[str | os.PathLike], runs: list[tuple[Path, list[Path]]]) -> None:
    """RunDirError when one run directory is given twice (``runA runA``, ``runA ./runA/``, a symlink to it):
    its trials would count twice. Distinct records files of one run may each be given."""
    seen: dict[Path, tuple[str | os.PathLike, frozenset[Path] | None]] = {}
    for item, (run_dir, files) in zip(items, runs):
        key = run_dir.resolve()
        one_file = frozenset(p.resolve() for p in files) if Path(item).is_file() else None
        if key in seen:
            first, first_file = seen[key]
            if one_file is None or first_file is None or one_file == first_file:
                raise RunDirError(f"{item}: is the run directory {first} again ({key}); its trials would count "
                                  "twice: give each run directory once")
        seen[key] = (item, one_file)


def _load_run(run_dir: Path, files: list[Path]) -> pd.DataFrame:
    """One run directory's records, deduplicated by trial id (last wins), with derived and run columns."""
    header = load_header(run_dir)
    plan = header_plan(header)
    by_id: dict[str, dict[str, Any]] = {}
    for path in files:
        for line, record in read_records(path).records:
            check_in_plan(path, line, record, plan)  # another run's records copied in are refused, not reported
            by_id.pop(record.trial_id, None)  # re-insert so the row order follows the last record
            by_id[record.trial_id] = {name: getattr(record, name) for name in RECORD_COLUMNS}
    if not by_id:
        names = ", ".join(p.name for p in files)
        raise RunDirError(
            f"{run_dir}: {names} hold no complete trial records yet; run `evalkit run CONFIG` first"
        )
    rows = list(by_id.values())
    labels = layout_labels_of(rows, header)
    for row, label in zip(rows, labels):
        row["layout"] = label
        row["run_dir"] = str(run_dir)
        row["config_hash"] = str(header.get("config_hash", ""))
    return _typed(pd.DataFrame.from_records(rows, columns=list(COLUMNS)))


def layout_labels_of(rows: list[dict[str, Any]], header: dict[str, Any]) -> list[str]:
    """Each row's layout label: its axes named as the run's ``layout:`` grid names them ("" for one layout).

    The label is what the run wrote into ``extra["layout"]`` in schema 1, computed from the same inputs.
    """
    config = header.get("config")
    grid_values = config.get("layout") if isinstance(config, dict) else None
    try:
        grid = LayoutGrid.model_validate(grid_values) if isinstance(grid_values, dict) else LayoutGrid()
    except ValidationError:
        grid = None  # a header from another version: name the axes off their default
    labels = []
    for row in rows:
        layout = Layout(**{axis: row[axis] for axis in LAYOUT_AXES})
        if grid is not None:
            labels.append(grid.label_of(layout))
        else:
            labels.append("" if layout == Layout() else layout.label())
    return labels


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
    for name in (*DERIVED_COLUMNS, *RUN_COLUMNS):
        frame[name] = frame[name].astype("str")
    return frame

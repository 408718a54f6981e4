"""A run's finished trials as one typed table, the source of every export format.

Rows come from ``load_results`` (the typed record loader: schema upgrades, several records files, another run's
records refused); nothing here parses a records file. One row per finished trial (``status == "ok"``); skipped
trials have no answer to export and are counted instead. Every column has one type: ``int``, ``float``, ``str``,
``bool`` or ``json`` (nested record fields, ``regions`` or ``extra``, as JSON text with a ``_json`` suffix), and
says whether it may be null.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evalkit.export.columns import DESCRIPTIONS
from evalkit.report.analysis.attention import AttentionData
from evalkit.report.analysis.attention import trial_table as needle_mass_per_trial
from evalkit.report.data.load import RECORD_COLUMNS, load_header, load_results
from evalkit.scoring import answer_cut_off
from evalkit.store.attention_arrays import attention_for_records
from evalkit.store.format import FIELD_TYPES
from evalkit.types import REGION_NEEDLE, TrialAttention

# record columns left out: constant once skipped trials are dropped
LEFT_OUT = ("status", "skip_reason")
JSON_SUFFIX = "_json"
KINDS = ("int", "float", "str", "bool", "json")


@dataclass(frozen=True)
class ExportColumn:
    """One column of the export: its name, its kind (``KINDS``), whether it holds nulls, one value per trial."""

    name: str
    kind: str
    nullable: bool
    values: tuple[Any, ...]
    description: str = ""


@dataclass(frozen=True)
class TrialTable:
    """A run directory's finished trials, column by column, with the header that defines the run."""

    run_dir: Path
    header: dict[str, Any]  # header.json as the store wrote it (config, versions, model revisions)
    columns: tuple[ExportColumn, ...]
    skipped: int  # trials recorded as skipped (out of memory, a server down): not in the table

    @property
    def trials(self) -> int:
        return len(self.columns[0].values) if self.columns else 0

    def column(self, name: str) -> ExportColumn:
        """The column called ``name`` (KeyError naming the known ones)."""
        for column in self.columns:
            if column.name == name:
                return column
        raise KeyError(f"{name!r} is not a column; columns: {', '.join(c.name for c in self.columns)}")

    def rows(self) -> list[dict[str, Any]]:
        """The table row by row (for writers that take one record per trial)."""
        return [dict(zip((c.name for c in self.columns), values)) for values in zip(*(c.values for c in self.columns))]


def trial_table(run_dir: str | Path) -> TrialTable:
    """Load ``run_dir`` and return its finished trials as a ``TrialTable`` (RunDirError when it holds none)."""
    records = load_results(run_dir)
    ok = (records["status"] == "ok").to_numpy()
    finished = records[ok].reset_index(drop=True)
    columns = [_record_column(name, finished[name]) for name in RECORD_COLUMNS if name not in LEFT_OUT]
    columns.append(_column("layout", "str", finished["layout"], "the layout's label when the run varied it, else ''"))
    columns.append(_column("config_hash", "str", finished["config_hash"], "hash of the run's config"))
    columns.extend(_derived_columns(finished))
    columns.extend(_attention_columns(finished))
    return TrialTable(Path(run_dir), load_header(run_dir), tuple(columns), skipped=int((~ok).sum()))


def _record_column(name: str, series: pd.Series) -> ExportColumn:
    """A TrialRecord field as a column of its declared type (``FIELD_TYPES``, the store's own)."""
    _, nullable, type_name = FIELD_TYPES[name]
    if type_name in ("dict", "list"):
        return _column(name + JSON_SUFFIX, "json", series, f"the record's {name}, as JSON text", nullable)
    return _column(name, type_name, series, DESCRIPTIONS.get(name, ""), nullable)


def _column(name: str, kind: str, series: pd.Series | list, description: str = "",
            nullable: bool | None = None) -> ExportColumn:
    values = tuple(_value(kind, v) for v in (series.tolist() if isinstance(series, pd.Series) else series))
    has_null = any(v is None for v in values)
    return ExportColumn(name, kind, has_null if nullable is None else (nullable or has_null), values, description)


def _value(kind: str, value: Any) -> Any:
    """A pandas cell as a plain Python value of ``kind`` (NaN and pandas' NA become None)."""
    if kind == "json":
        return None if value is None else json.dumps(value, sort_keys=True, ensure_ascii=False)
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    return {"int": int, "float": float, "str": str, "bool": bool}[kind](value)


def _derived_columns(finished: pd.DataFrame) -> list[ExportColumn]:
    """What a reader of the table wants without opening ``extra``: the score, the budget cut-off, look-alikes."""
    extras = [e if isinstance(e, dict) else {} for e in finished["extra"]]
    # a multi-needle task's partial credit (share of values found); any other task: 1.0 right, 0.0 wrong
    scores = [float(e["recall"]) if isinstance(e.get("recall"), (int, float)) else float(bool(c))
              for e, c in zip(extras, finished["correct"])]
    truncated = [bool(e.get("truncated")) for e in extras]
    cut_off = [answer_cut_off(e, g, m) for e, g, m in zip(extras, finished["generated"], finished["metric"])]
    placed = [len(d) if isinstance(d, list) else 0 for d in finished["distractors"]]
    return [
        _column("score", "float", scores, "recall for a multi-needle task, else 1.0 right / 0.0 wrong"),
        _column("truncated", "bool", truncated, "generation used its whole token budget without stopping"),
        _column("answer_cut_off", "bool", cut_off, "the budget cut the part of the answer the metric scores"),
        _column("distractors_placed", "int", placed, "look-alikes placed in the prompt"),
    ]


def _attention_columns(finished: pd.DataFrame) -> list[ExportColumn]:
    """The report's per-trial needle mass (row 0, the step that writes the first answer token, mean over layers and
    heads) and that mass against a uniform spread over the prompt; no columns when the run captured no attention."""
    arrays = attention_for_records(finished)
    keep = [a is not None and _has_needle(a) for a in arrays]  # a closed-book trial's needle region is empty
    if not any(keep):
        return []
    data = AttentionData(finished[keep].reset_index(drop=True), tuple(a for a, k in zip(arrays, keep) if k))
    table = needle_mass_per_trial(data)  # rows in the order of data.trials
    masses: list[float | None] = [None] * len(finished)
    relative: list[float | None] = [None] * len(finished)
    for row, index in enumerate(np.flatnonzero(keep)):
        masses[index] = float(table["needle_mass"].iloc[row])
        relative[index] = float(table["needle_mass_vs_uniform"].iloc[row])
    return [
        _column("needle_mass", "float", masses, "attention on the needle at the first answer step, mean of layers "
                "and heads", nullable=True),
        _column("needle_mass_vs_uniform", "float", relative, "needle_mass / (needle tokens / prompt tokens)",
                nullable=True),
    ]


def _has_needle(att: TrialAttention) -> bool:
    if REGION_NEEDLE not in att.region_names:
        return False
    start, end = att.spans[att.region_names.index(REGION_NEEDLE)]
    return bool(end > start)

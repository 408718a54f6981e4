"""Summary tables of trial records and a dependency-free Markdown formatter."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

from evalkit.report.data.labels import placement_trials
from evalkit.report.data.lengths import FRACTION, TOKENS, length_axis
from evalkit.report.analysis.stats import add_wilson_columns

GROUP_KEYS: tuple[str, ...] = ("model", "task", "context_length", "depth")
SUMMARY_COLUMNS: tuple[str, ...] = (
    *GROUP_KEYS,
    "n",  # trials with status "ok"
    "correct",
    "accuracy",  # correct / n (NaN when n == 0)
    "ci_low",  # Wilson 95% bounds of accuracy
    "ci_high",
    "exact_match_rate",
    "gold_logprob_mean",  # mean over ok trials of the per-token gold log-prob
    "achieved_depth_mean",
    "prompt_tokens_mean",
    "skipped",  # trials with any status other than "ok"
)
# Columns whose values are fractions shown as percentages in Markdown.
PERCENT_COLUMNS = frozenset({"depth", "achieved_depth_mean", "accuracy", "ci_low", "ci_high", "exact_match_rate",
                             FRACTION})
_HEADERS = {
    "context_length": "context length (tokens)",
    FRACTION: "context length (% of window)",
    "accuracy": "accuracy [95% CI] (n)",
    "exact_match_rate": "exact match",
    "gold_logprob_mean": "gold log-prob / token",
    "achieved_depth_mean": "achieved depth",
    "prompt_tokens_mean": "prompt tokens",
}
_MISSING = "–"


def _require(df: pd.DataFrame, columns: Iterable[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        hint = "add_variants(load_results(...))" if "variant" in missing else "load_results()"
        raise ValueError(f"records lack columns {missing}; pass the DataFrame from {hint}")


def summary_table(df: pd.DataFrame, by: str = "model") -> pd.DataFrame:
    """Per model x task x context_length x depth: counts, accuracy with Wilson 95% CI, means.

    ``df`` is the frame of ``load_results``. Only ``status == "ok"`` trials count in ``n`` and the
    rates and means; the others are counted in ``skipped``. Control trials (``control`` column,
    see ``control_labels``) are left out: they place no needle at a depth. ``by`` names the column
    of the series, e.g. ``"variant"`` after ``add_variants``; it replaces ``model`` in the output.
    Columns: ``SUMMARY_COLUMNS`` (with ``by`` first), and ``context_fraction`` after ``context_length`` where the
    records are lengths of each model's window (``report/data/lengths.py``; one fraction per length and model).
    """
    keys = [by, *GROUP_KEYS[1:]]
    if length_axis(df) == FRACTION:
        keys.insert(keys.index(TOKENS) + 1, FRACTION)
    _require(df, (*keys, "status", "correct", "exact_match", "gold_logprob_mean",
                  "achieved_depth", "prompt_tokens"))
    df = placement_trials(df)
    ok = (df["status"] == "ok").to_numpy(dtype=bool)
    work = pd.DataFrame({key: df[key].astype("object").to_numpy() for key in keys})
    work["_ok"] = ok
    work["_correct"] = ok & df["correct"].fillna(False).to_numpy(dtype=bool)
    work["_exact"] = ok & df["exact_match"].fillna(False).to_numpy(dtype=bool)
    for source, target in (("gold_logprob_mean", "_lp"), ("achieved_depth", "_ad"), ("prompt_tokens", "_pt")):
        work[target] = np.where(ok, df[source].to_numpy(dtype=float, na_value=np.nan), np.nan)
    grouped = work.groupby(keys, sort=True).agg(
        n=("_ok", "sum"),
        total=("_ok", "size"),
        correct=("_correct", "sum"),
        exact=("_exact", "sum"),
        gold_logprob_mean=("_lp", "mean"),
        achieved_depth_mean=("_ad", "mean"),
        prompt_tokens_mean=("_pt", "mean"),
    )
    table = grouped.reset_index()
    n = table["n"].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        table["accuracy"] = np.where(n > 0, table["correct"] / n, np.nan)
        table["exact_match_rate"] = np.where(n > 0, table["exact"] / n, np.nan)
    table["skipped"] = table["total"] - table["n"]
    table = add_wilson_columns(table, successes="correct", n="n")
    for column in ("n", "skipped", "correct", "context_length"):
        table[column] = table[column].astype("int64")
    for column in ("depth", FRACTION) if FRACTION in keys else ("depth",):
        table[column] = table[column].astype("float64")
    return table[[*keys, *SUMMARY_COLUMNS[len(GROUP_KEYS):]]]


def depth_length_matrix(
    df: pd.DataFrame, model: str, task: str, value: str = "accuracy", by: str = "model"
) -> pd.DataFrame:
    """Pivot of ``value`` (default accuracy) for one model and task: depth rows x context length columns.

    Rows are sorted by depth (0.0 first), columns by length; a cell with no ok trial is NaN. The columns are
    ``context_fraction`` where the records are fractions of the model's window (``lengths.length_axis``).
    ``by="variant"`` picks ``model`` from the ``variant`` column instead (see ``add_variants``).
    """
    for column, name in ((by, model), ("task", task)):
        known = sorted(map(str, df[column].unique().tolist()))
        if name not in known:
            raise ValueError(f"unknown {column} {name!r}; the records hold: {', '.join(known)}")
    sub = df[(df[by].astype("str") == model) & (df["task"] == task)]
    table = summary_table(sub, by=by)
    if value not in table.columns:
        raise ValueError(f"unknown value {value!r}; choose one of {', '.join(SUMMARY_COLUMNS[4:])}")
    axis = length_axis(sub)
    matrix = table.pivot(index="depth", columns=axis, values=value)
    matrix = matrix.sort_index().sort_index(axis=1)
    matrix.index.name, matrix.columns.name = "depth", axis
    return matrix


def format_percent(value: float, decimals: int = 1) -> str:
    """``0.8 -> "80.0%"``; NaN -> "–"."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return _MISSING
    return f"{float(value) * 100:.{decimals}f}%"


def format_ci_cell(accuracy: float, low: float, high: float, n: int) -> str:
    """One table cell for a rate with its interval: ``"80.0% [49.0-94.3] (n=10)"``."""
    if n == 0 or pd.isna(accuracy):
        return f"{_MISSING} (n={int(n)})"
    return f"{accuracy * 100:.1f}% [{low * 100:.1f}-{high * 100:.1f}] (n={int(n)})"


def to_markdown(table: pd.DataFrame, percent: bool | Iterable[str] | None = None) -> str:
    """Render a DataFrame as a GitHub Markdown table (no ``tabulate`` needed).

    When the table has ``accuracy``, ``ci_low``, ``ci_high`` and ``n`` they merge into one cell
    ``"80.0% [49.0-94.3] (n=10)"``. ``percent`` picks the columns shown as percentages: None for the
    known fraction columns (``PERCENT_COLUMNS``), True for every float column (e.g. a
    ``depth_length_matrix``), or an iterable of names. A named index becomes the first column.
    """
    frame, first_header = _flatten_index(table)
    merged = {"accuracy", "ci_low", "ci_high", "n"} <= set(map(str, frame.columns))
    if percent is None:
        percent_names = set(PERCENT_COLUMNS)
    elif percent is True:
        percent_names = {c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    else:
        percent_names = set(percent or ())
    headers, cells, numeric = [], [], []
    for position, column in enumerate(frame.columns):
        if merged and column in ("accuracy", "ci_low", "ci_high"):
            continue
        if merged and column == "n":  # the merged cell takes the place of the first of its columns
            values = [format_ci_cell(*row) for row in frame[["accuracy", "ci_low", "ci_high", "n"]].itertuples(index=False)]
        else:
            values = [_format_cell(v, column in percent_names) for v in frame[column].tolist()]
        name = "accuracy" if merged and column == "n" else str(column)
        if position == 0 and first_header:
            headers.append(first_header)  # escaped piece by piece in _flatten_index
        else:  # evalkit's own headers are written as meant ("accuracy [95% CI] (n)"); others are escaped
            headers.append(_HEADERS[name] if name in _HEADERS else escape_markdown(name))
        cells.append(values)
        numeric.append(pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]))
    return layout_table(headers, cells, numeric)


def _flatten_index(table: pd.DataFrame) -> tuple[pd.DataFrame, str | None]:
    """Move a meaningful index into the first column; name it ``"index \\ columns"`` for pivots."""
    if isinstance(table.index, pd.RangeIndex) and table.index.name is None:
        return table, None
    names = [escape_markdown(str(n)) if n is not None else "" for n in table.index.names]
    header = " / ".join(names) or None
    if header and table.columns.name:
        header = f"{header} \\ {escape_markdown(str(table.columns.name))}"
    return table.reset_index(), header


def _format_cell(value: object, as_percent: bool) -> str:
    """Text of one cell: percentages, short floats, yes/no, escaped strings."""
    if value is None or (not isinstance(value, (str, dict, list)) and pd.isna(value)):
        return _MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if as_percent:
            return f"{value * 100:.1f}%"
        return f"{value:.1f}" if abs(value) >= 100 else f"{value:.3f}"
    return escape_markdown(str(value))


# Markdown that could fetch or link out: [text](url), ![alt](url), reference links, `code`, autolinks
_MD_SPECIAL = re.compile(r"([\\`\[\]|])")


def escape_markdown(text: str) -> str:
    """Text shown literally in Markdown, on one line: HTML escaped (viewers render raw tags), brackets,
    backticks, pipes and backslashes escaped (no link or image, so nothing external is fetched), bare
    URLs broken up so no autolink forms. Names, needles and answers come from users and models."""
    text = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    text = re.sub(r"(?i)(?<=[a-z0-9+.-]):(?=//)", r"\\:", text)  # http://x is an autolink in GitHub Markdown
    text = re.sub(r"(?i)\bwww\.", r"www\\.", text)
    return re.sub(r"\s+", " ", text)  # a newline would end a table row or paragraph


def layout_table(headers: list[str], cells: list[list[str]], numeric: list[bool]) -> str:
    """Pad columns to a common width; numbers right-aligned."""
    widths = [max([len(h), 3, *(len(c) for c in col)]) for h, col in zip(headers, cells)]

    def line(parts: list[str]) -> str:
        padded = [p.rjust(w) if num else p.ljust(w) for p, w, num in zip(parts, widths, numeric)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric)]
    rows = [line(headers), "| " + " | ".join(rule) + " |"]
    rows += [line([col[i] for col in cells]) for i in range(len(cells[0]) if cells else 0)]
    return "\n".join(rows) + "\n"

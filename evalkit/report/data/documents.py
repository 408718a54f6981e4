"""The document-position axis of documents tasks, and the names of the metric that ``correct`` is.

A documents task (``evalkit/tasks/documents.py``) puts K documents in the prompt, the gold one at
``gold_document_index`` (0-based; ``depth`` only chose it: index = int(depth * (K - 1) + 0.5)). Its position
axis is that index, shown 1-based ("3 of 10"), not the token depth. Needle tasks keep the depth axis.
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.data.labels import placement_trials
from evalkit.scoring import METRIC_LABELS, METRIC_NOTES

POSITION_AXIS = "gold document position"
DEFAULT_METRIC = "contains"


def document_tasks(df: pd.DataFrame) -> frozenset[str]:
    """Tasks whose placement trials carry a gold document index (documents tasks)."""
    if "gold_document_index" not in df.columns or df.empty:
        return frozenset()
    placed = placement_trials(df)
    has = placed["gold_document_index"].notna().to_numpy()
    return frozenset(map(str, placed.loc[has, "task"].unique()))


def document_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials of documents tasks, with ``gold_position`` (1-based) and ``_correct`` (0/1)."""
    frame = placement_trials(df)
    if "gold_document_index" not in frame.columns:  # a hand-built frame of needle trials
        return frame.iloc[:0].assign(gold_document_index=0, documents_total=0, gold_position=0, _correct=0)
    keep = (frame["status"] == "ok").to_numpy() & frame["gold_document_index"].notna().to_numpy()
    frame = frame[keep]
    return frame.assign(
        gold_document_index=frame["gold_document_index"].astype("int64"),
        documents_total=frame["documents_total"].astype("int64"),
        gold_position=frame["gold_document_index"].astype("int64") + 1,
        _correct=frame["correct"].fillna(False).astype("int64"),
    )


def position_axis_label(total: int | None) -> str:
    """``"gold document position (1 = first of 10)"``; without a known total ``"... (1 = first)"``."""
    return f"{POSITION_AXIS} (1 = first of {int(total)})" if total else f"{POSITION_AXIS} (1 = first)"


def position_text(index: int, total: int) -> str:
    """A 0-based gold index as read: ``(4, 10) -> "5 of 10"``."""
    return f"{int(index) + 1} of {int(total)}"


def task_metric(df: pd.DataFrame, task: str) -> str:
    """The primary metric of ``task``'s records (``metric`` column; "contains" when absent or mixed)."""
    if "metric" not in df.columns:
        return DEFAULT_METRIC
    values = {str(m) for m in df.loc[df["task"] == task, "metric"].dropna().unique()}
    return values.pop() if len(values) == 1 else DEFAULT_METRIC


def metric_name(metric: str) -> str:
    """Display name of a metric: ``"liu" -> "Liu et al.'s best-subspan EM"``."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def metric_note(metric: str) -> str:
    """What a metric is, in one sentence ("" for one that needs no note)."""
    return METRIC_NOTES.get(metric, "")


def accuracy_label(metric: str) -> str:
    """``"accuracy"`` for the default metric (containment), else ``"accuracy (lenient subspan EM)"``."""
    return "accuracy" if metric == DEFAULT_METRIC else f"accuracy ({metric_name(metric)})"


def sentence_case(text: str) -> str:
    """First letter upper-cased, the rest kept (``str.capitalize`` would turn "EM" into "em")."""
    return text[:1].upper() + text[1:]


def single_documents_total(trials: pd.DataFrame) -> int | None:
    """K when every row of ``trials`` is a documents-task trial with the same K (> 1), else None."""
    if trials.empty or "gold_document_index" not in trials.columns or trials["gold_document_index"].isna().any():
        return None
    totals = set(trials["documents_total"].astype("int64"))
    return totals.pop() if len(totals) == 1 and max(totals) > 1 else None


def on_fraction_axis(trials: pd.DataFrame, total: int) -> pd.DataFrame:
    """``trials`` with ``depth`` replaced by the gold position as a fraction, index / (K - 1), exact where depth
    only chose it (0.25 with K = 10 gives index 2, i.e. 0.222): for code that reads positions off ``depth``."""
    return trials.assign(depth=trials["gold_document_index"].astype("int64") / (total - 1))


def fraction_position(fraction: float, total: int) -> int:
    """The 1-based gold position of ``on_fraction_axis``'s fraction: ``(2 / 9, 10) -> 3``."""
    return round(fraction * (total - 1)) + 1

"""The document-position axis of documents tasks, and the names of the metric that ``correct`` is.

A documents task (``evalkit/tasks/documents.py``) puts K documents in the prompt, the gold one at
``gold_document_index`` (0-based; ``depth`` only chose it: index = int(depth * (K - 1) + 0.5)). Its position
axis is that index, shown 1-based ("3 of 10"), not the token depth. Needle tasks keep the depth axis.
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.data.labels import placement_trials
from evalkit.scoring import METRIC_LABELS

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
    """Display name of a metric: ``"best_subspan_em" -> "best-subspan EM"``."""
    return METRIC_LABELS.get(metric, metric.replace("_", " "))


def accuracy_label(metric: str) -> str:
    """``"accuracy"`` for the default metric (containment), else ``"accuracy (best-subspan EM)"``."""
    return "accuracy" if metric == DEFAULT_METRIC else f"accuracy ({metric_name(metric)})"


def sentence_case(text: str) -> str:
    """First letter upper-cased, the rest kept (``str.capitalize`` would turn "EM" into "em")."""
    return text[:1].upper() + text[1:]

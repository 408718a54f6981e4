"""The report's "Backend agreement" section: two runs of one grid on two backends, compared trial by trial.

Shown when the report is given exactly two run directories whose model entries run on different backends
(e.g. ``transformers`` and ``served`` with llama.cpp) and that share finished trials of the same grid cells:
the same table as ``evalkit agree`` (answers equal, correctness equal with McNemar's exact test, the
distribution of gold log-prob differences), so a reader sees whether the fast engine measures the same thing.
"""

from __future__ import annotations

from evalkit.report.analysis.agreement import agreement, agreement_rows
from evalkit.report.document.blocks import Block, Code, Heading, Para, Table
from evalkit.report.document.sections import ReportData

__all__ = ["agreement_blocks", "run_backend"]


def run_backend(header: dict) -> str:
    """The backends of a run's model entries, e.g. ``transformers`` or ``served (llama_cpp)``."""
    names = []
    for model in (header.get("config") or {}).get("models") or []:
        model = model if isinstance(model, dict) else {}  # an old header may list names only
        backend = str(model.get("backend") or "transformers")
        served = model.get("served") or {}
        names.append(f"{backend} ({served.get('engine', '?')})" if backend == "served" else backend)
    return ", ".join(sorted(set(names))) or "?"


def agreement_blocks(data: ReportData) -> list[Block]:
    """The section, or nothing where the report is not two runs of one grid on two backends."""
    if len(data.dirs) != 2:
        return []
    backends = [run_backend(h) for h in data.headers]
    if backends[0] == backends[1]:
        return []
    frames = [data.df[data.df["run_dir"] == str(d)] for d in data.dirs]
    result = agreement(*frames)
    if result.pairs == 0:
        return []
    return [
        Heading(2, "Backend agreement", "backend-agreement"),
        Para(("A = ", Code(str(data.dirs[0])), f" ({backends[0]}); B = ", Code(str(data.dirs[1])),
              f" ({backends[1]}). Trials are paired by grid cell (task, length, depth, sample, control, layout), "
              "both finished. Answers equal means the same text; McNemar's exact test asks whether one backend "
              "is right more often on the discordant pairs; the gold log-prob difference is B minus A, in nats.")),
        Table(("measure", "value"), tuple(agreement_rows(result)), (False, False),
              caption="Trial-by-trial agreement of the two backends"),
    ]

"""The trial table as Inspect AI eval logs (``.eval``), one per model and task, for ``inspect view``.

An Inspect log holds one task run on one model, so a run of several models or tasks gives several logs. Each trial
is a sample: its id the trial id, its input the question (the haystack is not stored: the run's config rebuilds it,
and ``prompt_sha256`` identifies it), its target the gold answer, its output the model's answer, its score
``C`` / ``I`` (Inspect's correct / incorrect) by the task's metric, and every typed column in its metadata.
Needs ``inspect-ai`` (``pip install "evalkit[export]"``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from evalkit.export.table import TrialTable

SCORER = "evalkit"  # the scorer's name in each sample's scores and in the log's results
SOLVER = "evalkit_needle_prompt"  # the plan's one step: evalkit built the prompt and ran the model


def write_inspect_logs(table: TrialTable, folder: Path) -> list[Path]:
    """Write one ``<task>_<model>.eval`` per model and task of ``table`` into ``folder``; return the paths."""
    from inspect_ai.log import write_eval_log

    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in table.rows():
        groups.setdefault((row["model"], row["task"]), []).append(row)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for (model, task), rows in groups.items():
        name = f"{_file_part(task)}_{_file_part(model)}"
        path = folder / f"{name}.eval"
        if path in paths:  # two names that differ only in characters a file name drops ("a/b", "a-b")
            path = folder / f"{name}-{len(paths)}.eval"
        write_eval_log(eval_log(table, model, task, rows), str(path))
        paths.append(path)
    return paths


def eval_log(table: TrialTable, model: str, task: str, rows: list[dict[str, Any]]):  # -> inspect_ai.log.EvalLog
    """The Inspect log of one model and task: its spec (the run's config and versions), samples and accuracy."""
    from inspect_ai.log import EvalDataset, EvalLog, EvalPlan, EvalPlanStep, EvalSpec, EvalStats
    from inspect_ai.log import EvalConfig as InspectConfig

    header = table.header
    started = str(header.get("started_at", ""))
    spec = EvalSpec(
        run_id=str(header.get("config_hash", "")), created=started, task=f"evalkit/{task}", task_id=task,
        dataset=EvalDataset(name=task, samples=len(rows), sample_ids=[r["trial_id"] for r in rows]),
        model=model, config=InspectConfig(), packages={"evalkit": str(header.get("evalkit_version", ""))},
        metadata={"model_revision": rows[0]["model_revision"], "config_hash": header.get("config_hash"),
                  "evalkit_config": header.get("config"), "versions": header.get("versions")},
    )  # fmt: skip
    plan = EvalPlan(steps=[EvalPlanStep(solver=SOLVER, params={"seed": header.get("seed")})])
    return EvalLog(status="success", eval=spec, plan=plan, results=_results(rows),
                   stats=EvalStats(started_at=started, completed_at=started), samples=[_sample(r) for r in rows])


def _sample(row: dict[str, Any]):  # -> inspect_ai.log.EvalSample
    from inspect_ai.log import EvalSample
    from inspect_ai.model import ChatMessageAssistant, ChatMessageUser, ModelOutput
    from inspect_ai.scorer import CORRECT, INCORRECT, Score

    answer = row["generated"] or ""
    output = ModelOutput.from_content(row["model"], answer, stop_reason="max_tokens" if row["truncated"] else "stop")
    score = Score(value=CORRECT if row["correct"] else INCORRECT, answer=answer, explanation=row["failure"] or None,
                  metadata={"metric": row["metric"], "score": row["score"]})
    return EvalSample(
        id=row["trial_id"], epoch=1, input=row["question"], target=row["gold_answer"],
        messages=[ChatMessageUser(content=row["question"]), ChatMessageAssistant(content=answer)],
        output=output, scores={SCORER: score}, metadata=row,
    )


def _results(rows: list[dict[str, Any]]):  # -> inspect_ai.log.EvalResults
    """Accuracy and its standard error, as Inspect's ``accuracy()`` and ``stderr()`` metrics report them."""
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    n = len(rows)
    accuracy = sum(bool(r["correct"]) for r in rows) / n
    stderr = math.sqrt(accuracy * (1 - accuracy) / (n - 1)) if n > 1 else 0.0  # sample sd / sqrt(n), as Inspect
    metrics = {"accuracy": EvalMetric(name="accuracy", value=accuracy),
               "stderr": EvalMetric(name="stderr", value=stderr)}
    return EvalResults(total_samples=n, completed_samples=n,
                       scores=[EvalScore(name=SCORER, scorer=SCORER, metrics=metrics)])


def _file_part(name: str) -> str:
    """A model or task name as part of a file name (``org/model`` -> ``org-model``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.") or "unnamed"

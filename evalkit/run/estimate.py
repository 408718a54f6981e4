"""``evalkit plan CONFIG``: what a run will cost, before it runs (no model is loaded).

Counted from the planned trials (``plan.expand``) and their requested lengths, so the numbers are exact
for trial counts and within the length tolerance for tokens:

    prompt tokens   every trial's prompt prefilled in full
    with reuse      a reuse group (``schedule.reuse_groups``) runs in ascending depth, each trial reusing
                    the tokens before the previous trial's needle (what the prefix cache, or an engine's
                    prefix caching, keeps): the first trial prefills L tokens, the next L - d_prev * L
    answer tokens   the answer budget (max_new_tokens + reasoning_tokens) of every trial: an upper bound

The wall time is (prefilled tokens + answer tokens) / ``tokens_per_s``, a throughput the user measured
(no calibration forwards are run here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from evalkit.config.schema import EvalConfig
from evalkit.run.plan import expand
from evalkit.run.preflight import prepare_tasks
from evalkit.run.schedule import reuse_groups
from evalkit.types import Trial

__all__ = ["PlanEstimate", "estimate_plan", "format_estimate"]


@dataclass(frozen=True)
class PlanEstimate:
    """The cost of a config's run (see the module doc)."""

    trials: int
    prompt_tokens: int
    prompt_tokens_with_reuse: int
    answer_tokens: int
    wall_s: float | None  # None: no tokens_per_s given


def _group_prefill(group: list[Trial]) -> int:
    """Tokens one reuse group prefills when each trial reuses the prefix before the previous needle."""
    total, previous_depth = 0, None
    for trial in group:  # ascending depth
        depth = 0.0 if math.isnan(trial.depth) else trial.depth
        shared = 0 if previous_depth is None else int(previous_depth * trial.context_length)
        total += trial.context_length - shared
        previous_depth = depth
    return total


def estimate_plan(config: EvalConfig, config_path: str | Path, tokens_per_s: float | None = None) -> PlanEstimate:
    """Count the run of ``config`` (tasks are loaded to expand the grid; no model is)."""
    tasks = prepare_tasks(config, Path(config_path))
    trials = expand(config, {name: t.spec for name, t in tasks.items()})
    budget = {m.name: m.max_new_tokens + m.reasoning_tokens for m in config.models}
    full = sum(t.context_length for t in trials)
    reused = sum(_group_prefill(g) for g in reuse_groups(trials)) if config.reuse_prefix else full
    answers = sum(budget[t.model] for t in trials)
    wall = (reused + answers) / tokens_per_s if tokens_per_s else None
    return PlanEstimate(len(trials), full, reused, answers, wall)


def format_estimate(result: PlanEstimate) -> str:
    """The lines ``evalkit plan`` prints."""
    wall = (f"{result.wall_s:,.0f} s ({result.wall_s / 3600:.2f} h)" if result.wall_s is not None
            else "give --tokens-per-s N (a throughput you measured) for a wall-time estimate")  # fmt: skip
    saved = 1 - result.prompt_tokens_with_reuse / result.prompt_tokens if result.prompt_tokens else 0.0
    return "\n".join([
        f"trials: {result.trials:,}",
        f"prompt tokens to prefill: {result.prompt_tokens:,} without prefix reuse, "
        f"{result.prompt_tokens_with_reuse:,} with it ({saved:.0%} saved)",
        f"answer tokens (at most): {result.answer_tokens:,}",
        f"estimated wall time: {wall}",
    ])

"""``evalkit plan CONFIG``: what a run will cost, before it runs (no model is loaded).

Counted from the planned trials (``plan.expand``) and their requested lengths, so the numbers are exact
for trial counts and within the length tolerance for tokens:

    prompt tokens   every trial's prompt prefilled in full
    with reuse      a reuse group (``schedule.reuse_groups``) runs in ascending depth, each trial reusing
                    the tokens before the previous trial's needle (what the prefix cache, or an engine's
                    prefix caching, keeps): the first trial prefills L tokens, the next L - d_prev * L
    answer tokens   the answer budget (max_new_tokens + reasoning_tokens) of every trial: an upper bound
    first passes    an attention_sort or calibrate_attention trial on a documents task runs one more prompt
                    first, in full (no reuse): attention_sort answers it too, calibrate_attention's probe
                    generates one token; both are in the totals above

A ``search:`` block (``evalkit calibrate``) is costed apart, at its worst: every trial of its budget, for each
model x task, at its hardest setting (the highest length searched, or the config's length for a look-alike
search), in full.

The wall time is (prefilled tokens + answer tokens) / ``tokens_per_s`` where the user gives a throughput;
otherwise, with ``measure``, each model entry is loaded and timed on a few calibration forwards
(``calibrate.py``): its prefilled tokens / its prefill tokens/s + its answer tokens / its decode tokens/s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from evalkit.config.resolved_lengths import ContextLengths
from evalkit.config.mitigations import DOCUMENT_ATTENTION_ARMS
from evalkit.config.schema import EvalConfig
from evalkit.run.calibrate import Throughput, measure_throughput
from evalkit.run.plan import expand
from evalkit.run.preflight import prepare_tasks, resolve_context_lengths
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
    wall_s: float | None  # None: no tokens_per_s given and nothing measured
    measured: tuple[tuple[str, Throughput], ...] = ()  # (model, throughput) of the calibration forwards
    # documents tasks: their prompts are as long as their documents, and context_lengths only caps them
    upper_bound_tasks: tuple[str, ...] = ()
    first_passes: int = 0  # extra prompts of attention_sort and calibrate_attention trials (in the totals)
    search_trials: int = 0  # ``evalkit calibrate``'s budget over every model x task (0: no search block)
    search_prompt_tokens: int = 0  # those trials at the hardest setting, prefilled in full: an upper bound
    search_wall_s: float | None = None


def _group_prefill(group: list[Trial]) -> int:
    """Tokens one reuse group prefills when each trial reuses the prefix before the previous needle."""
    total, previous_depth = 0, None
    for trial in group:  # ascending depth
        depth = 0.0 if math.isnan(trial.depth) else trial.depth
        shared = 0 if previous_depth is None else int(previous_depth * trial.context_length)
        total += trial.context_length - shared
        previous_depth = depth
    return total


def _prefill(config: EvalConfig, trials: list[Trial]) -> int:
    full = sum(t.context_length for t in trials)
    return sum(_group_prefill(g) for g in reuse_groups(trials)) if config.reuse_prefix else full


def _first_passes(config: EvalConfig, trials: list[Trial], documents_tasks: set[str]) -> list[tuple[Trial, int]]:
    """(trial, answer tokens of its first pass) of every trial whose arm runs a first pass (see the module doc)."""
    out = []
    for trial in trials:
        kind = config.arm(trial.mitigation).arm
        if kind in DOCUMENT_ATTENTION_ARMS and not trial.control and trial.task in documents_tasks:
            model = next(m for m in config.models if m.label == trial.model)
            out.append((trial, model.max_new_tokens + model.reasoning_tokens if kind == "attention_sort" else 1))
    return out


def _measured_wall(config: EvalConfig, trials: list[Trial], first: list[tuple[Trial, int]],
                   lengths: ContextLengths) -> tuple[float, tuple[tuple[str, Throughput], ...]]:
    """Seconds from each model's calibration forwards, and those throughputs."""
    wall, measured = 0.0, []
    for model in config.models:
        mine = [t for t in trials if t.model == model.label]
        passes = [(t, n) for t, n in first if t.model == model.label]
        # short: plan must stay cheap
        speed = measure_throughput(model, prompt_tokens=min(512, max(lengths.tokens(model.label))))
        answers = len(mine) * (model.max_new_tokens + model.reasoning_tokens) + sum(n for _, n in passes)
        prefill = _prefill(config, mine) + sum(t.context_length for t, _ in passes)
        wall += prefill / speed.prefill_tokens_per_s + answers / speed.decode_tokens_per_s
        measured.append((model.label, speed))
    return wall, tuple(measured)


def _search_cost(config: EvalConfig, speeds: dict[str, Throughput], tokens_per_s: float | None,
                 lengths: ContextLengths) -> tuple[int, int, float | None]:
    """(trials, prompt tokens, seconds) of the search's budget at its hardest setting (see the module doc)."""
    search = config.search
    if search is None:
        return 0, 0, None
    per_model = search.budget * len(config.tasks)
    # a distractor_count search runs at the config's one length, in each model's tokens
    longest = {m.label: search.high if search.axis == "context_length" else max(lengths.tokens(m.label))
               for m in config.models}
    wall: float | None = 0.0
    for model in config.models:
        length = longest[model.label]
        answers = per_model * (model.max_new_tokens + model.reasoning_tokens)
        if tokens_per_s:
            wall += (per_model * length + answers) / tokens_per_s
        elif model.label in speeds:
            speed = speeds[model.label]
            wall += per_model * length / speed.prefill_tokens_per_s + answers / speed.decode_tokens_per_s
        else:
            wall = None
            break
    return per_model * len(config.models), per_model * sum(longest.values()), wall


def estimate_plan(config: EvalConfig, config_path: str | Path, tokens_per_s: float | None = None,
                  measure: bool = False) -> PlanEstimate:
    """Count the run of ``config`` (tasks are loaded to expand the grid; under ``context_unit: window`` each model's
    config too, for its window); ``measure``: time each model too."""
    tasks = prepare_tasks(config, Path(config_path))
    lengths = resolve_context_lengths(config, Path(config_path))
    trials = expand(config, {name: t.spec for name, t in tasks.items()}, lengths=lengths)
    budget = {m.label: m.max_new_tokens + m.reasoning_tokens for m in config.models}
    capped = tuple(name for name, task in tasks.items() if task.spec.documents is not None)
    first = _first_passes(config, trials, set(capped))
    first_tokens = sum(t.context_length for t, _ in first)
    full = sum(t.context_length for t in trials) + first_tokens
    reused = _prefill(config, trials) + first_tokens
    answers = sum(budget[t.model] for t in trials) + sum(n for _, n in first)
    wall, measured = None, ()
    if tokens_per_s:
        wall = (reused + answers) / tokens_per_s
    elif measure:
        wall, measured = _measured_wall(config, trials, first, lengths)
    search = _search_cost(config, dict(measured), tokens_per_s, lengths)
    return PlanEstimate(len(trials), full, reused, answers, wall, measured, capped, len(first), *search)


def format_estimate(result: PlanEstimate) -> str:
    """The lines ``evalkit plan`` prints."""
    wall = (f"{result.wall_s:,.0f} s ({result.wall_s / 3600:.2f} h)" if result.wall_s is not None
            else "give --tokens-per-s N (a throughput you measured) for a wall-time estimate")  # fmt: skip
    saved = 1 - result.prompt_tokens_with_reuse / result.prompt_tokens if result.prompt_tokens else 0.0
    speeds = [f"measured {name}: prefill {s.prefill_tokens_per_s:,.0f} tokens/s, decode {s.decode_tokens_per_s:,.1f} "
              f"tokens/s (calibration forwards on {s.prompt_tokens}-token prompts)" for name, s in result.measured]
    return "\n".join([
        f"trials: {result.trials:,}",
        f"prompt tokens to prefill: {result.prompt_tokens:,} without prefix reuse, "
        f"{result.prompt_tokens_with_reuse:,} with it ({saved:.0%} saved)",
        f"answer tokens (at most): {result.answer_tokens:,}",
        *([f"first passes (attention_sort, calibrate_attention): {result.first_passes:,} more prompts, in the totals "
           "above"] if result.first_passes else []),
        *([f"documents tasks ({', '.join(result.upper_bound_tasks)}): their prompts are as long as their documents, "
           "counted here at context_length, so tokens and time are upper bounds"] if result.upper_bound_tasks else []),
        *speeds,
        f"estimated wall time: {wall}",
        *([_search_line(result)] if result.search_trials else []),
    ])


def _search_line(result: PlanEstimate) -> str:
    wall = (f"{result.search_wall_s:,.0f} s ({result.search_wall_s / 3600:.2f} h)" if result.search_wall_s is not None
            else "give --tokens-per-s N for a time")
    return (f"evalkit calibrate (search block), at most: {result.search_trials:,} trials, "
            f"{result.search_prompt_tokens:,} prompt tokens (every trial at the hardest setting), {wall}")

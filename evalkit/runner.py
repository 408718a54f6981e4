"""Run an eval config: plan the trials, build each prompt, call the backend, score, store.

The runner owns ordering and bookkeeping only; placement lives in ``prompt.py``, model
calls in ``models/``, records in ``store.py`` and tables/charts in ``report/``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from evalkit.attention.preflight import check_capture
from evalkit.config import EvalConfig, ModelConfig
from evalkit.errors import ConfigError
from evalkit.plan import expand, limit_trials
from evalkit.preflight import PreparedTask, check_model_limits, prepare_tasks, run_header
from evalkit.prompt import PromptBuilder
from evalkit.store import RunStore
from evalkit.types import REGION_NEEDLE, Trial, TrialOutput, TrialRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    """What a call to ``run_eval`` did."""

    run_dir: Path
    planned: int  # trials in the (limited) plan
    already_done: int  # skipped because a previous run recorded them
    ran: int  # recorded by this call
    elapsed_s: float
    report_dir: Path | None


@dataclass
class _ModelSession:
    """A loaded model with its prompt builder, alive while its trials run."""

    config: ModelConfig
    loaded: object  # evalkit.models.LoadedModel
    builder: PromptBuilder
    capture: object | None = None  # evalkit.models.capture.AttentionCapture when attention.capture is on


def run_eval(
    config: EvalConfig,
    config_path: str | Path,
    *,
    limit: int | None = None,
    quiet: bool = False,
    write_report: bool = True,
) -> RunSummary:
    """Run (or resume) every trial of ``config`` and write the report; see README "Runs"."""
    started = time.perf_counter()
    config_path = Path(config_path)
    tasks = prepare_tasks(config, config_path)
    revisions = check_model_limits(config, config_path)
    check_capture(config, config_path)  # an uncapturable family is refused before the run dir is written
    trials = expand(config, {name: t.spec for name, t in tasks.items()}, revisions)
    if limit is not None:
        trials = limit_trials(trials, limit)
    run_dir = Path(config.output_dir)
    with RunStore(run_dir) as store:
        done = store.open(run_header(config, config_path, revisions))
        todo = [t for t in trials if t.trial_id not in done]
        log.info("%s: %d trials planned, %d already done, %d to run", run_dir, len(trials), len(trials) - len(todo), len(todo))
        ran = _run_trials(config, config_path, tasks, todo, store, quiet)
    report_dir = _write_report(run_dir) if write_report else None
    return RunSummary(run_dir, len(trials), len(trials) - len(todo), ran, time.perf_counter() - started, report_dir)


def _run_trials(
    config: EvalConfig,
    config_path: Path,
    tasks: dict[str, PreparedTask],
    todo: list[Trial],
    store: RunStore,
    quiet: bool,
) -> int:
    ran = 0
    progress = tqdm(total=len(todo), desc="trials", unit="trial", disable=quiet or not todo, dynamic_ncols=True)
    with progress:
        for model_cfg in config.models:
            model_trials = [t for t in todo if t.model == model_cfg.name]
            if not model_trials:
                continue
            session = _open_model(model_cfg, config, config_path, tasks)
            for trial in model_trials:
                record = run_trial(session, tasks[trial.task], trial, config, store)
                store.append(record)
                ran += 1
                progress.update(1)
                progress.set_postfix_str(f"{model_cfg.name} L={trial.context_length} d={trial.depth:g}")
    return ran


def _open_model(model_cfg: ModelConfig, config: EvalConfig, config_path: Path, tasks: dict[str, PreparedTask]) -> _ModelSession:
    from evalkit.models import load_model

    loaded = load_model(model_cfg)
    builder = PromptBuilder(loaded.tokenizer)
    session = _ModelSession(model_cfg, loaded, builder)
    if config.attention.capture:
        from evalkit.attention.trial import attach_capture

        session.capture = attach_capture(loaded.model, config.attention)
    _check_smallest_prompt(session, config, config_path, tasks)
    return session


def _check_smallest_prompt(session: _ModelSession, config: EvalConfig, config_path: Path, tasks: dict[str, PreparedTask]) -> None:
    """Refuse before any trial runs if the smallest context cannot hold the fixed parts."""
    from evalkit.errors import PlacementError

    smallest = min(config.context_lengths)
    for name, task in tasks.items():
        parts, _ = task.parts_for(seed=config.seed, model_cfg=session.config)
        try:
            session.builder.build_prompt(parts, task.sentences(config.seed), smallest, 0.0, config.length_tolerance_tokens)
        except PlacementError as err:
            raise ConfigError(f"{config_path}: context_lengths: {err} (task {name}, model {session.config.name})") from None


def run_trial(session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig, store: RunStore) -> TrialRecord:
    """Build, run and score one trial; the record is returned, not yet stored."""
    from evalkit.models import run_prompt
    from evalkit.scoring import score_answer

    parts, needle = task.parts_for(seed=trial.seed, model_cfg=session.config)
    prompt = session.builder.build_prompt(
        parts, task.sentences(trial.seed), trial.context_length, trial.depth, config.length_tolerance_tokens
    )
    if config.save_prompts:
        store.save_prompt(trial.trial_id, prompt, session.loaded.tokenizer.decode(prompt.input_ids))
    gold_ids = session.builder.gold_continuation_ids(parts, needle.answer)
    if session.capture is not None:
        output = _run_with_capture(session, prompt, gold_ids, config, store, trial.trial_id)
    else:
        output: TrialOutput = run_prompt(
            session.loaded, prompt.input_ids, gold_ids, max_new_tokens=session.config.max_new_tokens
        )
    score = score_answer(output.generated_text, needle.answer, parts.answer_prefix)
    needle_span = prompt.regions[REGION_NEEDLE]
    return TrialRecord(
        trial_id=trial.trial_id,
        status="ok",
        model=trial.model,
        model_revision=session.loaded.revision,
        task=trial.task,
        context_length=trial.context_length,
        prompt_tokens=prompt.prompt_tokens,
        length_tolerance_tokens=prompt.length_tolerance_tokens,
        depth=trial.depth,
        achieved_depth=prompt.achieved_depth,
        sample=trial.sample,
        seed=trial.seed,
        needle=needle.needle,
        question=needle.question,
        gold_answer=needle.answer,
        generated=output.generated_text,
        correct=score.correct,
        exact_match=score.exact_match,
        gold_logprob_sum=output.gold_logprob_sum,
        gold_logprob_mean=output.gold_logprob_mean,
        gold_first_token_is_argmax=output.gold_first_token_is_argmax,
        gold_tokens=len(output.gold_token_ids),
        regions={name: [s.token_start, s.token_end] for name, s in prompt.regions.items()},
        needle_token_start=needle_span.token_start,
        needle_token_end=needle_span.token_end,
        prompt_sha256=prompt.prompt_sha256,
        elapsed_s=round(output.elapsed_s, 4),
    )


def _run_with_capture(session: _ModelSession, prompt, gold_ids, config: EvalConfig, store: RunStore,
                      trial_id: str) -> TrialOutput:
    """Run with attention capture; its arrays are on disk before the caller appends the record."""
    from evalkit.attention.storage import save_trial_attention
    from evalkit.attention.trial import run_captured

    output, attention = run_captured(session.loaded, session.capture, prompt, gold_ids,
                                     session.config.max_new_tokens, config.attention)
    save_trial_attention(store.run_dir, trial_id, attention)
    return output


def _write_report(run_dir: Path) -> Path:
    from evalkit.report import write_report

    out_dir = run_dir / "report"
    write_report([run_dir], out_dir)
    return out_dir


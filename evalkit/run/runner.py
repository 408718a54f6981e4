"""Run an eval config: plan the trials, build each prompt, call the backend, score, store.

The runner owns ordering and bookkeeping only; placement lives in ``prompt.py``, model
calls in ``models/``, records in ``store.py`` and tables/charts in ``report/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from evalkit.attention.preflight import check_capture
from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.prompt.controls import TrialPrompt
from evalkit.run.distributed import current_slot, model_for_slot, shard_trials, wait_for_everyone
from evalkit.errors import ConfigError
from evalkit.run.memory import run_or_skip
from evalkit.run.plan import expand, limit_trials
from evalkit.run.preflight import PreparedTask, check_model_limits, prepare_tasks, run_header
from evalkit.prompt.builder import PromptBuilder
from evalkit.run.prompt_checks import check_prompts_fit
from evalkit.store.run_store import RunStore
from evalkit.types import (
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    BuiltPrompt,
    Trial,
    TrialOutput,
    TrialRecord,
)

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
    skipped: int = 0  # trials of the run dir recorded as skipped (out of memory); see --retry-skipped


@dataclass
class _ModelSession:
    """A loaded model with its prompt builder, alive while its trials run."""

    config: ModelConfig
    loaded: object  # evalkit.models.LoadedModel
    builder: PromptBuilder
    capture: object | None = None  # evalkit.attention.capture.AttentionCapture when attention.capture is on


def run_eval(
    config: EvalConfig,
    config_path: str | Path,
    *,
    limit: int | None = None,
    quiet: bool = False,
    write_report: bool = True,
    retry_skipped: bool = False,
) -> RunSummary:
    """Run (or resume) every trial of ``config`` and write the report; see README "Runs"."""
    started = time.perf_counter()
    config_path = Path(config_path)
    tasks = prepare_tasks(config, config_path)
    revisions = check_model_limits(config, config_path)
    check_prompts_fit(config, config_path, tasks)  # before the run directory exists
    # a kernel the family cannot run, or an uncapturable family, is refused before the run dir is written
    kernels = check_capture(config, config_path)
    trials = expand(config, {name: t.spec for name, t in tasks.items()}, revisions)
    if limit is not None:
        trials = limit_trials(trials, limit)
    run_dir = Path(config.output_dir)
    slot = current_slot()
    with RunStore(run_dir, slot.records_name, slot.lock_name, slot.prompts_name) as store:
        done = store.open(run_header(config, config_path, revisions))
        if retry_skipped and store.forget_skipped():
            done = store.finished_ids()
        trials = shard_trials(trials, slot)  # this process's share (all of them for one process)
        todo = [t for t in trials if t.trial_id not in done]
        log.info("%s: %d trials planned, %d already done, %d to run", run_dir, len(trials), len(trials) - len(todo), len(todo))
        ran = _run_trials(config, config_path, tasks, todo, store, quiet, kernels)
        skipped = len(store.skipped_ids() & {t.trial_id for t in trials})
    # with several processes the main one reports once all are done (see distributed.py)
    if write_report and not wait_for_everyone(slot):
        log.warning("%s: %d processes and no process group to wait on: run `evalkit report %s` when all are done",
                    run_dir, slot.world_size, run_dir)  # fmt: skip
        write_report = False
    report_dir = _write_report(run_dir) if write_report and slot.is_main else None
    return RunSummary(run_dir, len(trials), len(trials) - len(todo), ran, time.perf_counter() - started, report_dir,
                      skipped)


def _run_trials(
    config: EvalConfig,
    config_path: Path,
    tasks: dict[str, PreparedTask],
    todo: list[Trial],
    store: RunStore,
    quiet: bool,
    kernels: dict[str, str],
) -> int:
    ran = 0
    progress = tqdm(total=len(todo), desc="trials", unit="trial", disable=quiet or not todo, dynamic_ncols=True)
    with progress:
        for model_cfg in config.models:
            model_trials = [t for t in todo if t.model == model_cfg.name]
            if not model_trials:
                continue
            # the kernel check_capture chose (attention.inner while capture is on) is the one the model loads with
            loaded_cfg = model_cfg.model_copy(update={"attn_implementation": kernels[model_cfg.name]})
            session = _open_model(loaded_cfg, config, config_path, tasks)
            for record in _scheduled(session, tasks, model_trials, config, store):
                store.append(record)
                ran += 1
                progress.update(1)
                progress.set_postfix_str(f"{model_cfg.name} L={record.context_length} d={record.depth:g}")
    return ran


def _scheduled(
    session: _ModelSession, tasks: dict[str, PreparedTask], trials: list[Trial], config: EvalConfig, store: RunStore
) -> Iterator[TrialRecord]:
    """The model's records in the order ``schedule.py`` runs them (reuse groups or batches)."""
    from evalkit.run import schedule

    if config.reuse_prefix or config.batch_size == 1:
        from evalkit.models.prefix import PrefixCache

        prefix = PrefixCache(session.loaded) if config.reuse_prefix else None

        def run_one(trial: Trial, cache: object) -> TrialRecord:
            def attempt() -> TrialRecord:
                try:
                    return run_trial(session, tasks[trial.task], trial, config, store, prefix=cache)
                except BaseException:
                    if cache is not None:
                        cache.reset()  # a failed extension leaves the shared cache in an unknown state
                    raise

            return run_or_skip(trial, session.loaded.revision, attempt)

        return schedule.run_with_reuse(trials, prefix, run_one)
    loaded = session.loaded

    def run_many(batch: list[Trial]) -> list[TrialRecord]:
        if len(batch) > 1:  # schedule.run_in_batches halves a batch that runs out of memory
            return run_batch_of_trials(session, tasks, batch, config, store)
        # a single trial that still does not fit is recorded as skipped and the run goes on
        return [run_or_skip(batch[0], loaded.revision, lambda: run_batch_of_trials(session, tasks, batch, config, store)[0])]

    return schedule.run_in_batches(
        trials, config.batch_size, run_many,
        lambda length, count: schedule.auto_batch_size(loaded.model, loaded.device, length, count),
    )


def _open_model(model_cfg: ModelConfig, config: EvalConfig, config_path: Path, tasks: dict[str, PreparedTask]) -> _ModelSession:
    from evalkit.models import load_model

    loaded = load_model(model_for_slot(model_cfg, current_slot(), f"{config_path}: models"))
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

    from evalkit.prompt.controls import build_trial_prompt

    smallest = min(config.context_lengths)
    for name, task in tasks.items():
        for layout in config.layout.layouts():  # a layout with the question twice needs more room
            probe = Trial("", session.config.name, name, smallest, 0.0, 0, config.seed, "", layout.id_pairs())
            try:
                build_trial_prompt(session.builder, task, probe, session.config, config)
            except PlacementError as err:
                where = f"task {name}, model {session.config.name}, {layout.label()}"
                raise ConfigError(f"{config_path}: context_lengths: {err} ({where})") from None
        _check_haystack_fills(session, config, config_path, name, task)


def _check_haystack_fills(session: _ModelSession, config: EvalConfig, config_path: Path, name: str,
                          task: PreparedTask) -> None:
    """Refuse a files or dataset haystack too small for the longest context (it would repeat itself)."""
    from evalkit.tasks.sources import check_fills

    parts, _ = task.parts_for(seed=config.seed, model_cfg=session.config)
    needed = max(config.context_lengths) - session.builder.fixed_tokens(parts) - config.length_tolerance_tokens
    check_fills(task.haystack, lambda text: len(session.builder.fragment_ids(text)), needed,
                f"{config_path}: tasks: {name}")


@dataclass(frozen=True)
class _PreparedTrial:
    """A trial's prompt and gold ids, built and (optionally) saved, ready for the backend."""

    trial: Trial
    built: TrialPrompt  # parts (task, model entry, layout), needle, prompt and record extras
    gold_ids: list[int]

    @property
    def prompt(self) -> BuiltPrompt:
        return self.built.prompt


def run_trial(
    session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig, store: RunStore,
    prefix: object | None = None,
) -> TrialRecord:
    """Build, run and score one trial; the record is returned, not yet stored.

    ``prefix`` (a ``models.prefix.PrefixCache``): reuse its cache for the tokens before the needle.
    """
    from evalkit.models import run_prompt

    prepared = _prepare_trial(session, task, trial, config, store)
    reuse = {} if prefix is None else {"prefix": prefix, "prefix_tokens": prepared.prompt.regions[REGION_CONTEXT_BEFORE].token_end}
    if session.capture is not None:
        output = _run_with_capture(session, prepared, config, store, reuse)
    else:
        output = run_prompt(
            session.loaded, prepared.prompt.input_ids, prepared.gold_ids, max_new_tokens=session.config.max_new_tokens,
            **reuse,
        )
    return _trial_record(session, prepared, output)


def run_batch_of_trials(
    session: _ModelSession, tasks: dict[str, PreparedTask], trials: list[Trial], config: EvalConfig, store: RunStore
) -> list[TrialRecord]:
    """Build the trials' prompts, run them as one batch (``models/batch.py``) and score each."""
    from evalkit.models.batch import run_batch

    prepared = [_prepare_trial(session, tasks[t.task], t, config, store) for t in trials]
    outputs = run_batch(
        session.loaded, [p.prompt.input_ids for p in prepared], [p.gold_ids for p in prepared],
        max_new_tokens=session.config.max_new_tokens,
    )
    return [_trial_record(session, p, out) for p, out in zip(prepared, outputs)]


def _prepare_trial(
    session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig, store: RunStore
) -> _PreparedTrial:
    from evalkit.prompt.controls import build_trial_prompt

    built = build_trial_prompt(session.builder, task, trial, session.config, config)
    if config.save_prompts:
        store.save_prompt(trial.trial_id, built.prompt, session.loaded.tokenizer.decode(built.prompt.input_ids))
    gold_ids = session.builder.gold_continuation_ids(built.parts, built.needle.answer)
    return _PreparedTrial(trial, built, gold_ids)


def _trial_record(session: _ModelSession, prepared: _PreparedTrial, output: TrialOutput) -> TrialRecord:
    from evalkit.prompt.controls import score_trial

    trial, built = prepared.trial, prepared.built
    prompt, needle = built.prompt, built.needle
    score, score_extra = score_trial(output.generated_text, built)
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
        extra={**built.extra, **score_extra,
               "truncated": is_truncated(output.generated_token_ids, session.config.max_new_tokens,
                                         session.loaded.stop_token_ids)},
    )


def is_truncated(generated_ids: tuple[int, ...], max_new_tokens: int, stop_token_ids) -> bool:
    """True when generation used the whole budget without a stop token (the answer may be cut off)."""
    return len(generated_ids) >= max_new_tokens and (not generated_ids or generated_ids[-1] not in set(stop_token_ids))


def _run_with_capture(
    session: _ModelSession, prepared: _PreparedTrial, config: EvalConfig, store: RunStore, reuse: dict
) -> TrialOutput:
    """Run with attention capture; its arrays are on disk before the caller appends the record."""
    from evalkit.store.attention_arrays import save_trial_attention
    from evalkit.attention.trial import run_captured

    output, attention = run_captured(session.loaded, session.capture, prepared.prompt, prepared.gold_ids,
                                     session.config.max_new_tokens, config.attention, **reuse)
    save_trial_attention(store.run_dir, prepared.trial.trial_id, attention)
    return output


def _write_report(run_dir: Path) -> Path:
    from evalkit.report import write_report

    out_dir = run_dir / "report"
    write_report([run_dir], out_dir)
    return out_dir


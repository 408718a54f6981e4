"""Run an eval config: plan the trials, build each prompt, call the backend, score, store.

The runner owns ordering and bookkeeping only; placement lives in ``prompt/``, model calls behind
the ``models.base.Backend`` interface (chosen per model entry by ``backend:``, see ``models/backends.py``),
records in ``store/`` and tables/charts in ``report/``. It hands the backend ``TrialRequest``s and never
reaches into the model: capture, prefix reuse and batching are the backend's, checked against its
``Capabilities`` before the run directory exists (``run/backend_checks.py``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from evalkit.attention.preflight import check_capture
from evalkit.attention.rows import trial_attention
from evalkit.attention.trial import attach_capture, capture_request
from evalkit.config.resolved_lengths import ContextLengths
from evalkit.config.mitigations import DOCUMENT_ATTENTION_ARMS
from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.errors import ConfigError, PlacementError, TrialFailed
from evalkit.models.backends import backend_class
from evalkit.models.base import Backend, TrialRequest
from evalkit.models.registry import resolve_model_defaults
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import TrialPrompt, build_trial_prompt
from evalkit.prompt.reorder import arm_kind
from evalkit.prompt.tokenization import decode_exact, token_texts
from evalkit.report import write_report
from evalkit.run.arm_passes import attention_sort_pass, calibration_pass
from evalkit.run.arms import arm_attached, heads_for_arm, resolve_arm_heads, trials_by_arm
from evalkit.run.backend_checks import check_backends
from evalkit.run.environment import model_facts, utc_now
from evalkit.run.distributed import current_slot, model_for_slot, record_end_when_all_done, shard_trials
from evalkit.run.memory import run_or_skip
from evalkit.run.plan import expand, limit_trials
from evalkit.run.preflight import PreparedTask, model_limits, prepare_tasks, run_header
from evalkit.run.prompt_checks import check_prompts_fit, warn_short_line_budgets
from evalkit.run.schedule import run_groups_concurrently, run_in_batches, run_with_reuse
from evalkit.run.trial_failure import distractor_spans
from evalkit.run.trial_record import trial_record
from evalkit.store.format import REPORT_DIR, run_output, save_trial_attention
from evalkit.store.run_store import RunStore
from evalkit.tasks.sources import check_fills
from evalkit.types import REGION_CONTEXT_BEFORE, BuiltPrompt, Trial, TrialAttention, TrialOutput, TrialRecord

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
    """A model's backend with its prompt builder, alive while its trials run."""

    config: ModelConfig
    backend: Backend
    builder: PromptBuilder
    capture: bool = False  # attention.capture is on: every request asks for it
    reuse: bool = False  # requests carry their shared-prefix length (reuse_prefix on a backend that has it)
    # trials of several reuse groups may run in threads (served): building prompts and saving them is serialised
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def revision(self) -> str:
        """The model revision records carry."""
        return self.backend.info.revision


def run_eval(
    config: EvalConfig,
    config_path: str | Path,
    *,
    limit: int | None = None,
    quiet: bool = False,
    write_report: bool = True,
    retry_skipped: bool = False,
) -> RunSummary:
    """Run (or resume) every trial of ``config`` and write the report; see docs/run-directory.md."""
    started = time.perf_counter()
    config_path = Path(config_path)
    config = resolve_model_defaults(config)  # the header, hash and prompts carry the resolved chat_template
    tasks = prepare_tasks(config, config_path)
    limits = model_limits(config, config_path)  # each model's revision, and its lengths in tokens
    revisions = limits.revisions
    check_prompts_fit(config, config_path, tasks, limits.lengths)  # before the run directory exists
    check_backends(config, config_path)  # a backend asked for what it cannot do is refused here too
    # a kernel the family cannot run, or an uncapturable family, is refused before the run dir is written
    kernels = check_capture(config, config_path)
    arm_heads = resolve_arm_heads(config, config_path)  # a from_run arm reads that run before this one starts
    warn_short_line_budgets(config, config_path, tasks)  # once nothing is refused: a refusal stays one line
    trials = expand(config, {name: t.spec for name, t in tasks.items()}, revisions, limits.lengths)
    if limit is not None:
        trials = limit_trials(trials, limit)
    run_dir = Path(config.output_dir)
    slot = current_slot()
    with RunStore(run_dir, slot.records_name, slot.lock_name, slot.prompts_name) as store:
        done = store.open(run_header(config, config_path, revisions, tasks, trials, limits.lengths))
        if retry_skipped and store.forget_skipped():
            done = store.finished_ids()
        trials = shard_trials(trials, slot)  # this process's share (all of them for one process)
        todo = [t for t in trials if t.trial_id not in done]
        log.info("%s: %d trials planned, %d already done, %d to run", run_dir, len(trials), len(trials) - len(todo), len(todo))
        ran = _run_trials(config, config_path, tasks, (trials, done), store, quiet,
                          (kernels, arm_heads, limits.lengths))
        skipped = len(store.skipped_ids() & {t.trial_id for t in trials})
        if slot.world_size == 1:  # the end time is in the header before the report reads it
            store.record_end(utc_now(), time.perf_counter() - started)
    # with several processes the main one records the end and reports once all are done (see distributed.py)
    if not record_end_when_all_done(run_dir, slot, started) and write_report:
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
    plan: tuple[list[Trial], set[str]],
    store: RunStore,
    quiet: bool,
    loading: tuple[dict[str, str], dict[tuple[str, str], list[list[int]]], ContextLengths],
) -> int:
    """Run the trials of ``plan`` (this process's trials, ids already done) model by model, arm by arm (the
    kernels, the ``from_run`` arms' heads and each model's lengths in ``loading``); return how many ran."""
    trials, done = plan
    kernels, arm_heads, lengths = loading
    ran = 0
    todo = sum(t.trial_id not in done for t in trials)
    progress = tqdm(total=todo, desc="trials", unit="trial", disable=quiet or not todo, dynamic_ncols=True)
    with progress:
        for model_cfg in config.models:
            model_trials = [t for t in trials if t.model == model_cfg.label]
            if all(t.trial_id in done for t in model_trials):
                continue
            view = lengths.config_for(config, model_cfg.label)  # its lengths in its own tokens, for its prompts
            # the kernel check_capture chose (attention.inner while capture is on) is the one the model loads with
            loaded_cfg = model_cfg.model_copy(update={"attn_implementation": kernels[model_cfg.label]})
            session = _open_model(loaded_cfg, view, config_path, tasks)
            try:
                store.record_model(model_cfg.label, model_facts(session.backend.info, model_cfg))
                for arm, arm_trials in trials_by_arm(model_trials, view):
                    if all(t.trial_id in done for t in arm_trials):
                        continue
                    heads = heads_for_arm(arm, model_cfg.label, store.run_dir, arm_heads)
                    with arm_attached(session.backend, arm, heads) as arm_extra:
                        for record in _scheduled(session, tasks, (arm_trials, done), view, store):
                            store.append(dataclasses.replace(record, extra={**record.extra, **arm_extra}))
                            ran += 1
                            progress.update(1)
                            progress.set_postfix_str(f"{model_cfg.label} L={record.context_length} "
                                                     f"d={record.depth:g} {arm.label}")
            finally:
                session.backend.close()
    return ran


def _scheduled(
    session: _ModelSession, tasks: dict[str, PreparedTask], plan: tuple[list[Trial], set[str]], config: EvalConfig,
    store: RunStore,
) -> Iterator[TrialRecord]:
    """The model's records in the order ``schedule.py`` runs them (reuse groups or batches).

    One trial at a time, a group's done trials are replayed unrecorded before its first trial still to
    run (``schedule.run_with_reuse``): what a trial sees never depends on where a previous run stopped.
    """
    trials, done = plan
    backend = session.backend

    def attempt(trial: Trial, write: bool) -> TrialRecord:
        try:
            return run_trial(session, tasks[trial.task], trial, config, store, write=write)
        except BaseException:
            backend.reset()  # a failed extension leaves the shared cache in an unknown state
            raise

    def run_one(trial: Trial) -> TrialRecord:
        return run_or_skip(trial, session.revision, lambda: attempt(trial, True))

    def replay(trial: Trial) -> None:  # a done trial, run again for the state it leaves; nothing is written
        run_or_skip(trial, session.revision, lambda: attempt(trial, False))

    if config.reuse_prefix or config.batch_size == 1:
        if not type(backend).capabilities.prefix_reuse:
            # the engine keeps its own prefix cache (served): groups in ascending depth, several at once;
            # nothing is kept here between requests, so done trials need no replay
            return run_groups_concurrently(trials, run_one, done, backend.info.max_concurrency)
        return run_with_reuse(trials, run_one, done, replay, start_group=backend.reset)

    def run_many(batch: list[Trial]) -> list[TrialRecord]:
        if len(batch) > 1:  # schedule.run_in_batches halves a batch that runs out of memory
            try:
                return run_batch_of_trials(session, tasks, batch, config, store)
            except TrialFailed:  # one request failed for good: each trial alone, the failing one skipped
                return [run_one(t) for t in batch]
        # a single trial that still does not fit is recorded as skipped and the run goes on
        return [run_or_skip(batch[0], session.revision, lambda: run_batch_of_trials(session, tasks, batch, config, store)[0])]

    todo = [t for t in trials if t.trial_id not in done]
    return run_in_batches(todo, config.batch_size, run_many, backend.suggest_batch_size)


def _open_model(model_cfg: ModelConfig, config: EvalConfig, config_path: Path, tasks: dict[str, PreparedTask]) -> _ModelSession:
    """Load the entry's backend (capture attached when on) and check the smallest prompt fits."""
    cls = backend_class(model_cfg.backend)
    capture = functools.partial(attach_capture, settings=config.attention) if config.attention.capture else None
    backend = cls.load(model_for_slot(model_cfg, current_slot(), f"{config_path}: models"), capture)
    reuse = config.reuse_prefix and cls.capabilities.prefix_reuse
    session = _ModelSession(model_cfg, backend, PromptBuilder(backend.info.tokenizer), config.attention.capture, reuse)
    try:
        _check_smallest_prompt(session, config, config_path, tasks)
    except BaseException:
        backend.close()
        raise
    return session


def _check_smallest_prompt(session: _ModelSession, config: EvalConfig, config_path: Path, tasks: dict[str, PreparedTask]) -> None:
    """Refuse before any trial runs if the smallest context cannot hold the fixed parts."""
    smallest = min(config.context_lengths)
    for name, task in tasks.items():
        for layout in config.layout.layouts():  # a layout with the question twice needs more room
            probe = Trial("", session.config.label, name, smallest, 0.0, 0, config.seed, "", layout.id_pairs())
            try:
                build_trial_prompt(session.builder, task, probe, session.config, config)
            except PlacementError as err:
                where = f"task {name}, model {session.config.label}, {layout.label()}"
                raise ConfigError(f"{config_path}: context_lengths: {err} ({where})") from None
        _check_haystack_fills(session, config, config_path, name, task)


def _check_haystack_fills(session: _ModelSession, config: EvalConfig, config_path: Path, name: str,
                          task: PreparedTask) -> None:
    """Refuse a files or dataset haystack too small for the longest context (it would repeat itself)."""
    if task.spec.documents is not None:  # a documents task has no haystack stream (its prompts were checked)
        return
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
    write: bool = True,
) -> TrialRecord:
    """Build, run and score one trial; the record is returned, not yet stored (attention arrays are).

    With reuse on, the request says how many leading tokens (up to the needle) it shares with the
    next trials of its group; the backend keeps them cached. ``write`` False (a replayed trial):
    nothing goes to the run directory, neither its prompt nor its attention arrays.
    """
    order, first_pass = _sort_pass(session, task, trial, config)
    prepared = _prepare_trial(session, task, trial, config, store if write else None, order)
    calibration, probe_pass = _calibration_pass(session, task, trial, config, prepared)
    first_pass = first_pass or probe_pass
    prompt = prepared.prompt
    layout = request_capture = None
    if session.capture:  # the placed look-alikes are regions of their own (attention_focus compares them)
        layout, request_capture = capture_request(prompt, config.attention, distractor_spans(prepared.built))
    prefix_tokens = prompt.regions[REGION_CONTEXT_BEFORE].token_end if session.reuse else 0
    (output,) = session.backend.run([_request(session, prepared, prefix_tokens, request_capture, calibration)])
    attention = trial_attention(layout, prompt, output) if layout is not None else None
    if attention is not None and write:  # arrays on disk before the caller appends the record (resume stays exact)
        store.write_header()
        save_trial_attention(store.run_dir, trial.trial_id, attention)
    record = _trial_record(session, prepared, output, attention)
    if first_pass is None:
        return record
    return dataclasses.replace(record, extra={**record.extra, **first_pass.extra}, extra_forwards=first_pass.forwards,
                               extra_prompt_tokens=first_pass.prompt_tokens)


def _first_pass_arm(task: PreparedTask, trial: Trial, config: EvalConfig) -> str:
    """The trial's arm if it has a first pass (attention_sort, calibrate_attention), else ""."""
    kind = arm_kind(config, trial)
    return kind if kind in DOCUMENT_ATTENTION_ARMS and not trial.control and task.spec.documents else ""


def _captured_runner(session: _ModelSession, trial: Trial):
    """Send one captured request for a built prompt (a first pass: no prefix reuse, nothing saved)."""
    def run(built: TrialPrompt, capture, max_new_tokens: int) -> TrialOutput:
        prepared = _PreparedTrial(trial, built, list(built.gold_ids or ()) or _gold_ids(session, built))
        request = dataclasses.replace(_request(session, prepared, 0, capture), max_new_tokens=max_new_tokens)
        return session.backend.run([request])[0]

    return run


def _sort_pass(session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig):
    """An attention_sort trial's ``(order, FirstPass)`` for its answer pass; ``(None, None)`` for any other."""
    if _first_pass_arm(task, trial, config) != "attention_sort":
        return None, None
    baseline = _prepare_trial(session, task, trial, config, None)  # the trial's own prompt, not saved
    budget = session.config.max_new_tokens + session.config.reasoning_tokens
    return attention_sort_pass(_captured_runner(session, trial), baseline.built, config.attention, budget)


def _calibration_pass(session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig,
                      answer: _PreparedTrial):
    """A calibrate_attention trial's ``(CalibrationRequest, FirstPass)``; ``(None, None)`` for any other."""
    if _first_pass_arm(task, trial, config) != "calibrate_attention":
        return None, None
    arm = config.arm(trial.mitigation)
    with session.lock:
        probe = build_trial_prompt(session.builder, task, trial, session.config, config,
                                   content_free=arm.content_free_text)
    return calibration_pass(_captured_runner(session, trial), probe, answer.built, arm, config.attention)


def run_batch_of_trials(
    session: _ModelSession, tasks: dict[str, PreparedTask], trials: list[Trial], config: EvalConfig, store: RunStore
) -> list[TrialRecord]:
    """Build the trials' prompts, run them as one batch request and score each."""
    prepared = [_prepare_trial(session, tasks[t.task], t, config, store) for t in trials]
    outputs = session.backend.run([_request(session, p) for p in prepared])
    return [_trial_record(session, p, out) for p, out in zip(prepared, outputs)]


def _request(session: _ModelSession, prepared: _PreparedTrial, prefix_tokens: int = 0, capture=None,
             calibration=None) -> TrialRequest:
    return TrialRequest(
        input_ids=tuple(prepared.prompt.input_ids), gold_ids=tuple(prepared.gold_ids),
        max_new_tokens=session.config.max_new_tokens + session.config.reasoning_tokens, prefix_tokens=prefix_tokens,
        capture=capture, calibration=calibration,
    )


def _prepare_trial(
    session: _ModelSession, task: PreparedTask, trial: Trial, config: EvalConfig, store: RunStore | None,
    order: list[int] | None = None,
) -> _PreparedTrial:
    """The trial's prompt (documents in ``order`` when given) and gold ids; its prompt is saved when
    ``save_prompts`` (and ``store`` is given)."""
    with session.lock:  # the tokenizer and the prompts file are shared by the threads of concurrent groups
        built = build_trial_prompt(session.builder, task, trial, session.config, config, order)
        if config.save_prompts and store is not None:
            tokenizer, ids = session.backend.info.tokenizer, built.prompt.input_ids
            # per-token texts only serve the viewer's token colouring, which needs per-token attention too
            pieces = token_texts(tokenizer, ids) if config.attention.capture and config.attention.tokens else None
            store.save_prompt(trial.trial_id, built.prompt, decode_exact(tokenizer, ids), pieces)
        gold_ids = list(built.gold_ids) if built.gold_ids is not None else _gold_ids(session, built)
    return _PreparedTrial(trial, built, gold_ids)


def _gold_ids(session: _ModelSession, built: TrialPrompt) -> list[int]:
    return session.builder.gold_continuation_ids(built.parts, built.needle.answer)


def _trial_record(session: _ModelSession, prepared: _PreparedTrial, output: TrialOutput,
                  attention: TrialAttention | None = None) -> TrialRecord:
    return trial_record(prepared.trial, prepared.built, output, revision=session.revision,
                        think_pattern=session.config.think_pattern, max_new_tokens=session.config.max_new_tokens,
                        stop_token_ids=session.backend.info.stop_token_ids, tokenizer=session.backend.info.tokenizer,
                        attention=attention)


def _write_report(run_dir: Path) -> Path:
    """The run's report in ``RUN/report`` (a link out of the run directory is refused, never followed)."""
    return write_report([run_dir], run_output(run_dir, REPORT_DIR)).out_dir

"""Out-of-memory handling: a trial that cannot fit is recorded as skipped and the run goes on.

``run_or_skip`` wraps one trial: an out-of-memory error (CUDA, MPS or CPU allocator) frees what it
can and returns a ``status="skipped"`` record naming the reason; any other error propagates. Reports
count skipped trials apart from wrong ones; a rerun leaves them skipped unless ``--retry-skipped``.
Batching code can call ``is_out_of_memory`` and ``free_memory`` to halve a batch and retry before
falling back to skipping single trials.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable

from evalkit.errors import TrialFailed
from evalkit.prompt.controls import record_axes
from evalkit.types import Trial, TrialRecord

log = logging.getLogger(__name__)

SKIP_OUT_OF_MEMORY = "out of memory"  # every skip_reason for memory starts with this
# what allocators say when they fail (torch raises plain RuntimeError for some devices)
_OOM_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError (CUDA), MemoryError and allocator RuntimeErrors (MPS, CPU)."""
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if isinstance(exc, (MemoryError, *oom_types)):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc).lower() for m in _OOM_MESSAGES)


def free_memory() -> None:
    """Drop garbage and return cached accelerator memory (call after the failed call's frames are gone)."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mps = getattr(torch, "mps", None)
    if mps is not None and torch.backends.mps.is_available():
        mps.empty_cache()


def out_of_memory_reason(exc: BaseException) -> str:
    """``"out of memory: <first line of the error>"`` (kept short for tables)."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{SKIP_OUT_OF_MEMORY}: {type(exc).__name__}: {first[:200]}"


def skipped_record(trial: Trial, reason: str, model_revision: str) -> TrialRecord:
    """A ``status="skipped"`` record: the trial's coordinates and the reason; no measurement.

    Measured fields hold neutral values (0, "", False) and the float ones None (JSON null, NaN in
    ``load_results``); the grid axes are the trial's, so reports count the skip in its own cell and variant.
    """
    return TrialRecord(
        trial_id=trial.trial_id, status="skipped", model=trial.model, model_revision=model_revision,
        task=trial.task, context_length=trial.context_length, prompt_tokens=0, length_tolerance_tokens=0,
        depth=trial.depth, achieved_depth=None, sample=trial.sample, seed=trial.seed,  # type: ignore[arg-type]
        needle="", question="", gold_answer="", generated="", correct=False, exact_match=False,
        gold_logprob_sum=None, gold_logprob_mean=None,  # type: ignore[arg-type]
        gold_first_token_is_argmax=False, gold_tokens=0, regions={}, needle_token_start=0, needle_token_end=0,
        prompt_sha256="", elapsed_s=0.0, skip_reason=reason, **record_axes(trial),
    )


def run_or_skip(trial: Trial, model_revision: str, run: Callable[[], TrialRecord]) -> TrialRecord:
    """``run()``; on an out-of-memory error (freeing memory) or ``TrialFailed``, a skipped record instead."""
    try:
        return run()
    except TrialFailed as exc:  # e.g. a served engine still down after its retries: skipped, not fatal
        log.warning("trial %s (%s, L=%d, depth %g) skipped: %s", trial.trial_id, trial.model,
                    trial.context_length, trial.depth, exc.reason)
        return skipped_record(trial, exc.reason, model_revision)
    except Exception as exc:  # noqa: BLE001 - only memory errors are handled, the rest re-raised
        if not is_out_of_memory(exc):
            raise
        reason = out_of_memory_reason(exc)
    # outside the except block: the failed call's frames (and their tensors) are released by now
    free_memory()
    log.warning("trial %s (%s, L=%d, depth %g) skipped: %s", trial.trial_id, trial.model,
                trial.context_length, trial.depth, reason)
    return skipped_record(trial, reason, model_revision)

"""A finished trial's record: the built prompt, the backend's output and the score, as one ``TrialRecord``."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Collection
from typing import Any

from evalkit.prompt.controls import TrialPrompt, record_axes, score_trial
from evalkit.run.trial_failure import trial_failure, trial_focus
from evalkit.types import REGION_NEEDLE, Trial, TrialAttention, TrialOutput, TrialRecord

__all__ = ["is_truncated", "strip_reasoning", "trial_record"]


def trial_record(trial: Trial, built: TrialPrompt, output: TrialOutput, *, revision: str, think_pattern: str | None,
                 max_new_tokens: int, stop_token_ids: Collection[int], tokenizer: Any,
                 attention: TrialAttention | None = None) -> TrialRecord:
    """The record of ``trial``: its prompt ``built``, the backend's ``output`` scored after the reasoning is cut,
    its failure type (``tokenizer`` decodes the prompt it reads) and, from its captured ``attention``, its focus."""
    prompt, needle = built.prompt, built.needle
    answer, think_extra = strip_reasoning(output.generated_text, think_pattern)
    score, score_extra = score_trial(answer, built)
    needle_span = prompt.regions[REGION_NEEDLE]
    truncated = is_truncated(output.generated_token_ids, max_new_tokens, stop_token_ids)
    failure = trial_failure(built, answer, output.generated_text, score, truncated, tokenizer)
    return TrialRecord(
        trial_id=trial.trial_id,
        status="ok",
        model=trial.model,
        model_revision=revision,
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
        **record_axes(trial),
        mitigation=trial.mitigation,
        gold_document_index=built.gold_document_index,
        documents_total=built.documents_total,
        document_spans=[[s.token_start, s.token_end] for s in prompt.document_spans] or None,
        question_overlap=built.similarity.overlap if built.similarity else None,
        question_bm25=built.similarity.bm25 if built.similarity else None,
        metric=score.metric, best_subspan_em=score.best_subspan_em, keyword_recall=score.keyword_recall, liu=score.liu,
        distractors=[dataclasses.asdict(d) for d in built.distractors] or None,
        failure=failure.kind, failure_distractor=failure.distractor, attention_focus=trial_focus(trial, attention),
        extra={**built.extra, **score_extra, **output.extra, **think_extra, "truncated": truncated},
    )


def is_truncated(generated_ids: tuple[int, ...], max_new_tokens: int, stop_token_ids: Collection[int]) -> bool:
    """True when generation used the whole budget without a stop token (the answer may be cut off)."""
    return len(generated_ids) >= max_new_tokens and (not generated_ids or generated_ids[-1] not in set(stop_token_ids))


def strip_reasoning(generated: str, pattern: str | None) -> tuple[str, dict[str, object]]:
    """The answer scored (``pattern`` removed, ends stripped) and what the record adds (the scored text)."""
    if not pattern:
        return generated, {}
    answer = re.sub(pattern, "", generated).strip()
    return answer, {"scored_answer": answer}

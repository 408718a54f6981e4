"""A finished trial's failure type (``evalkit/failures.py``) and attention focus (``attention/focus.py``) from its
prompt, answer and score: the record's ``failure``, ``failure_distractor`` and ``attention_focus``."""

from __future__ import annotations

from typing import Any

from evalkit.attention.focus import attention_focus
from evalkit.failures import Failure, FailureInput, classify_failure
from evalkit.prompt.controls import TrialPrompt
from evalkit.prompt.tokenization import decode_exact
from evalkit.scoring import answer_cut_off
from evalkit.types import Score, Trial, TrialAttention

__all__ = ["distractor_spans", "gold_values", "trial_failure", "trial_focus"]


def gold_values(built: TrialPrompt) -> tuple[str, ...]:
    """The trial's gold values: a multi-value task's required values, else the needle's value and the aliases."""
    needle = built.needle
    if needle.required_values:
        return needle.required_values
    return tuple(dict.fromkeys(v for v in (needle.value, *(needle.answer_aliases or (needle.answer,))) if v))


def trial_failure(built: TrialPrompt, answer: str, generated: str, score: Score, truncated: bool,
                  tokenizer: Any) -> Failure:
    """The failure type of a trial: ``answer`` the scored text, ``generated`` the whole output (what the report
    reads a cut-off answer from), ``truncated`` whether the budget ran out without a stop token."""
    if score.correct:  # nothing to read: the prompt is decoded only for a miss
        return Failure("correct")
    prompt = built.prompt
    ids = prompt.input_ids
    given = FailureInput(
        answer=answer, correct=score.correct, golds=gold_values(built), prompt_text=decode_exact(tokenizer, ids),
        value_pattern=built.value_pattern, multi_value=bool(built.needle.required_values),
        distractor_values=tuple(d.value for d in built.distractors),
        documents=tuple(decode_exact(tokenizer, ids[s.token_start : s.token_end]) for s in prompt.document_spans),
        gold_document_index=built.gold_document_index,
        cut_off=answer_cut_off({"truncated": truncated}, generated, score.metric),
    )
    return classify_failure(given)


def trial_focus(trial: Trial, attention: TrialAttention | None) -> str | None:
    """Where the answer step looked (ATTENTION_FOCUS), for a placement trial whose attention was captured (a
    control's needle region holds no fact: a dummy sentence, or nothing)."""
    return attention_focus(attention) if attention is not None and not trial.control else None


def distractor_spans(built: TrialPrompt) -> tuple[tuple[int, int], ...]:
    """The placed look-alikes' token spans, captured as regions of their own (``attention/regions.py``)."""
    return tuple((d.token_start, d.token_end) for d in built.distractors)

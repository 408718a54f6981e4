"""Run one prompt: one forward serves the gold-answer log-prob and the greedy answer.

    run_prompt: forward(prompt + draft)  -> gold log-probs and greedy tokens while the draft agrees
                                            (draft = gold answer + the model's usual tail, models/draft.py)
                continue_greedy(cache)   -> one-token decoding after the first disagreement only

The classic path (``classic.py``: prompt forward, gold forward, one-token decoding) runs when the
caller's ``AnswerMemory`` does not know the model's crop limit yet, or the cache would grow past it.
What is learned (the crop limit, the tail after the gold answer) goes into that memory, which the
caller owns: the ``TransformersBackend`` keeps one per model instance (``transformers_backend.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.models.classic import PrefillState, continue_greedy, feed, greedy_decode, prefill, score_gold
from evalkit.models.draft import (
    AnswerMemory,
    answer_draft,
    fixed_draft,
    forward_with_draft,
    greedy_from_draft,
    tail_after_gold,
)
from evalkit.models.forward import GoldScore, crop_limit, gold_score_from_logits, greedy_token, trial_output
from evalkit.models.hf import LoadedModel
from evalkit.types import TrialOutput

if TYPE_CHECKING:
    from evalkit.models.prefix import PrefixCache

__all__ = ["run_prompt"]

StepContext = Callable[[int], "AbstractContextManager[Any] | None"]


@dataclass(frozen=True)
class _Job:
    """One call of ``run_prompt``, checked and with its defaults resolved."""

    input_ids: Sequence[int]
    gold_ids: Sequence[int]
    max_new_tokens: int
    stops: tuple[int, ...]
    tail: tuple[int, ...]
    prefill_context: AbstractContextManager[Any] | None
    decode_context: StepContext | None
    prefix_tokens: int

    @property
    def total_tokens(self) -> int:
        """The longest the cache grows: prompt plus the longer of gold answer and greedy answer."""
        return len(self.input_ids) + max(len(self.gold_ids), self.max_new_tokens)


@dataclass
class _Answer:
    """What one trial's forwards gave: the gold score, the greedy tokens and the cache they leave."""

    gold: GoldScore
    generated: list[int]
    cache: Any


def run_prompt(
    loaded: LoadedModel,
    input_ids: Sequence[int],
    gold_ids: Sequence[int],
    max_new_tokens: int,
    stop_token_ids: Sequence[int] | None = None,
    *,
    memory: AnswerMemory | None = None,
    prefill_context: AbstractContextManager[Any] | None = None,
    decode_context: StepContext | None = None,
    prefix: PrefixCache | None = None,
    prefix_tokens: int = 0,
    answer_tail: Sequence[int] | None = None,
) -> TrialOutput:
    """Run ``input_ids`` once: the gold answer's log-prob and the greedy answer from the same forward.

    The prompt is fed together with a draft answer (``models/draft.py``): the gold answer, then
    ``answer_tail`` (None: ``memory.tail``, what this model generated after the gold answer last time,
    updated by this call). Greedy tokens are read off that forward for as long as the draft agrees;
    one-token decoding goes on after the first disagreement. With ``memory`` None (nothing known) or
    a cache that would grow past ``memory.crop_limit``, the classic path runs instead (prompt forward,
    gold forward on the cache, one-token decoding) and an unknown limit is learned from its cache.

    ``stop_token_ids`` None means ``loaded.stop_token_ids``; an empty sequence decodes exactly
    ``max_new_tokens``. ``generated_token_ids`` ends with the stop id when one was hit (as ``generate``
    does); the text skips special tokens. ``prefill_context`` is entered around the one forward that
    feeds the prompt (attention capture: ``capture.record(rows, spans)``; read it after the call).

    Prefix reuse: with ``prefix`` (a ``PrefixCache``) the prompt's part already in that shared cache is
    not fed again; afterwards the cache is cut to this prompt's first ``prefix_tokens`` tokens for the
    next trial (no separate prefix forward). Capture rows must lie after the prefix.
    ``decode_context(k)`` is entered around decode forward ``k`` (the one feeding answer token ``k - 1``);
    on the draft path those are replayed one token each while it returns a context (rows capture wants).
    """
    import torch

    if len(input_ids) == 0:
        raise ValueError("run_prompt: input_ids is empty")
    if len(gold_ids) == 0:
        raise ValueError("run_prompt: gold_ids is empty; the gold answer must have at least one token")
    memory = AnswerMemory() if memory is None else memory
    job = _Job(
        input_ids, gold_ids, max_new_tokens, loaded.stop_token_ids if stop_token_ids is None else tuple(stop_token_ids),
        memory.tail if answer_tail is None else tuple(answer_tail), prefill_context, decode_context, prefix_tokens,
    )
    started = time.perf_counter()
    with torch.inference_mode():
        answer = _answer_on_prefix(loaded, memory, job, prefix)
    learned = tail_after_gold(answer.generated, gold_ids)
    if learned is not None and answer_tail is None:
        memory.tail = learned
    return trial_output(loaded.tokenizer, answer.generated, gold_ids, answer.gold, time.perf_counter() - started)


def _answer_on_prefix(loaded: LoadedModel, memory: AnswerMemory, job: _Job, prefix: PrefixCache | None) -> _Answer:
    """Take the shared prefix (if any), pick the draft or the classic path, and keep the new prefix after."""
    total = job.total_tokens
    # the draft path crops its cache back: only below the limit (sliding windows refuse a crop past theirs)
    drafted = memory.crop_limit is not None and total < memory.crop_limit
    past, _ = (None, 0) if prefix is None else prefix.acquire(job.input_ids[: job.prefix_tokens], total)
    try:
        if drafted:
            answer = _answer_with_draft(loaded, job, _draft_of(memory, job), past)
        else:
            answer = _answer_classic(loaded, job, past)
            if memory.crop_limit is None:
                memory.crop_limit = crop_limit(answer.cache)
    except BaseException:
        if prefix is not None:
            prefix.reset()  # a failed forward leaves the shared cache in an unknown state
        raise
    if prefix is not None:
        prefix.keep(answer.cache, job.input_ids[: job.prefix_tokens], total)
    return answer


def _draft_of(memory: AnswerMemory, job: _Job) -> list[int]:
    if not memory.fixed_length:
        return answer_draft(job.gold_ids, job.tail, job.max_new_tokens)
    filler = job.stops[0] if job.stops else int(job.gold_ids[-1])  # any id: it only has to be a token
    return fixed_draft(job.gold_ids, job.tail, job.max_new_tokens, filler)


def _answer_classic(loaded: LoadedModel, job: _Job, past: Any) -> _Answer:
    """Prompt forward (after the shared prefix, if any), gold forward on its cache, one-token decoding."""
    state = prefill(loaded, job.input_ids, job.prefill_context, past)
    gold = score_gold(loaded, state, job.gold_ids)
    generated = greedy_decode(loaded, state, job.max_new_tokens, job.stops, job.decode_context)
    return _Answer(gold, generated, state.cache)


def _answer_with_draft(loaded: LoadedModel, job: _Job, draft: list[int], past: Any) -> _Answer:
    """One forward over prompt + draft; one-token decoding only where the draft and greedy part."""
    import torch

    forward = forward_with_draft(loaded, job.input_ids, draft, past, job.prefill_context)
    gold = gold_score_from_logits(forward.logits, job.gold_ids)
    if job.max_new_tokens < 1:
        return _Answer(gold, [], forward.cache)
    generated, accepted, finished = greedy_from_draft(forward.logits, draft, job.stops, job.max_new_tokens)
    ids = torch.tensor([list(job.input_ids)], dtype=torch.long, device=loaded.device)
    if job.decode_context is not None:  # decode rows need forwards of their own: replay them from the prompt
        if draft:
            forward.cache.crop(-len(draft))
        state = PrefillState(ids, forward.cache, forward.logits[0].log_softmax(-1))
        return _Answer(gold, _replay_decode_rows(loaded, state, generated, finished, job), state.cache)
    if finished:
        return _Answer(gold, generated, forward.cache)
    if accepted < len(draft):
        forward.cache.crop(-(len(draft) - accepted))  # keep the prompt and the agreed tokens
    state = PrefillState(ids, forward.cache, forward.logits[accepted].log_softmax(-1))
    return _Answer(gold, continue_greedy(loaded, state, generated, job.max_new_tokens, job.stops), state.cache)


def _replay_decode_rows(
    loaded: LoadedModel, state: PrefillState, known: list[int], finished: bool, job: _Job
) -> list[int]:
    """Decode forwards ``k = 1, 2, ...`` one token each while ``decode_context(k)`` wants a row, feeding
    tokens already known from the draft; the rest of the known answer in one forward, then greedy decoding.

    ``state.cache`` holds the prompt; ``known`` are the greedy tokens the draft forward gave (``finished``:
    they end the answer). Each forward is the one plain decoding would run, so the rows are the same.
    """
    decode_context, stops, max_new_tokens = job.decode_context, job.stops, job.max_new_tokens
    known = list(known)
    fed = 0  # known tokens in the cache after the prompt
    while fed < len(known) - int(finished):  # decode forward fed + 1 feeds known[fed]
        context = decode_context(fed + 1)
        if context is None:
            break
        out = feed(loaded, state, [known[fed]], context)
        fed += 1
        if fed == len(known):  # every known token is in: plain greedy decoding from here
            known.append(int(greedy_token(out.logits[0, -1])))
            return continue_greedy(loaded, state, known, max_new_tokens, stops, decode_context)
    if finished:
        return known
    if fed < len(known) - 1:
        feed(loaded, state, known[fed:-1], None)  # agreed tokens whose rows nobody wants: one forward
    return continue_greedy(loaded, state, known, max_new_tokens, stops, decode_context)

"""Run one prompt: one forward serves the gold-answer log-prob and the greedy answer.

    run_prompt: forward(prompt + draft)  -> gold log-probs and greedy tokens while the draft agrees
                                            (draft = gold answer + the model's usual tail, models/draft.py)
                continue_greedy(cache)   -> one-token decoding after the first disagreement only

The classic path (a model's first trial, caches that cannot be cut back) runs the same in three steps:

    prefill(prompt)            -> KV cache + log-probs at the last prompt position
    score_gold(cache, gold)    -> teacher-force gold[:-1] on the cache in one forward, then crop it back
    greedy_decode(cache)       -> argmax token by token from the prefill logits until a stop id

Greedy decoding is plain argmax: the model's generation_config sampling and penalties (temperature,
repetition_penalty, ...) are deliberately ignored, so outputs equal ``generate(do_sample=False)`` with
default logits processors and are reproducible across models. Batch size is 1 here (``batch.py``
batches); tensors keep the batch dimension.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.models.draft import (
    answer_draft,
    crop_limit,
    forward_with_draft,
    greedy_from_draft,
    memory_of,
    tail_after_gold,
)
from evalkit.models.hf import LoadedModel
from evalkit.types import TrialOutput

if TYPE_CHECKING:
    import torch

    from evalkit.models.prefix import PrefixCache


@dataclass
class PrefillState:
    """The model state after the prompt: its cache and the next-token distribution."""

    input_ids: torch.Tensor  # [1, prompt_tokens] on the model's input device
    cache: Any  # the model's KV cache (a DynamicCache for most families), holding exactly the prompt
    next_logprobs: torch.Tensor  # [vocab] float32 log-softmax at the last prompt position

    @property
    def prompt_tokens(self) -> int:
        return int(self.input_ids.shape[1])


@dataclass(frozen=True)
class GoldScore:
    """Teacher-forced log-probability of the gold answer tokens after the prompt."""

    logprob_sum: float
    logprob_mean: float  # per gold token
    first_token_is_argmax: bool  # gold[0] is the greedy choice at the last prompt position


def _accepts(model: Any, argument: str) -> bool:
    return argument in inspect.signature(model.forward).parameters


def _with_cache(model: Any, cache: Any) -> dict[str, Any]:
    """The forward keyword for a KV cache: ``cache`` from transformers 5.2x on, ``past_key_values`` before."""
    return {"cache": cache} if _accepts(model, "cache") else {"past_key_values": cache}


def _output_cache(out: Any) -> Any:
    # newer outputs name the field ``cache`` (``past_key_values`` still works there but warns)
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def prefill(
    loaded: LoadedModel,
    input_ids: Sequence[int],
    context: AbstractContextManager[Any] | None = None,
    past_cache: Any = None,
) -> PrefillState:
    """Run the prompt once with a cache; ``context`` is entered around the forward that feeds its last token.

    ``past_cache`` (optional) already holds the first ``past_cache.get_seq_length()`` tokens of
    ``input_ids`` (a shared prefix, see ``models/prefix.py``): only the rest is fed, as an extension
    of it (a long one in pieces, see ``draft.extension_pieces``), and the returned state owns that
    cache. A context with ``set_query_start(start)`` (an attention recording) is told where that
    forward's first query sits in the prompt. The same as ``draft.forward_with_draft`` with no draft.
    """
    import torch

    forward = forward_with_draft(loaded, input_ids, (), past_cache, context)  # no draft: the last logits only
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=loaded.device)  # [1, L]
    return PrefillState(input_ids=ids, cache=forward.cache, next_logprobs=forward.logits[-1].log_softmax(-1))


def _can_crop(cache: Any, length_tokens: int) -> bool:
    """Whether ``cache`` can be rolled back after growing to ``length_tokens`` without losing prompt states."""
    return length_tokens < crop_limit(cache)


def _gold_logits_with_cache(loaded: LoadedModel, state: PrefillState, forced: torch.Tensor) -> torch.Tensor:
    out = loaded.model(input_ids=forced, use_cache=True, **_with_cache(loaded.model, state.cache))
    # a negative crop removes that many tokens; it means the same in every transformers 5.x
    # (5.24 refuses positive "absolute length" values)
    state.cache.crop(-forced.shape[1])
    if state.cache.get_seq_length() != state.prompt_tokens:
        raise RuntimeError(
            f"cache holds {state.cache.get_seq_length()} tokens after crop, expected {state.prompt_tokens}"
        )
    return out.logits[0]  # [G-1, V]


def _gold_logits_without_cache(loaded: LoadedModel, state: PrefillState, forced: torch.Tensor) -> torch.Tensor:
    # Fallback for caches that cannot be rolled back (sliding-window layers past their window,
    # linear-attention states, custom caches): a separate forward over prompt + gold[:-1], leaving the
    # prefill cache untouched for decoding. It costs a second prefill, only for those models.
    import torch

    model = loaded.model
    ids = torch.cat([state.input_ids, forced], dim=1)  # [1, L + G - 1]
    extra = {"logits_to_keep": forced.shape[1]} if _accepts(model, "logits_to_keep") else {}
    out = model(input_ids=ids, use_cache=False, **extra)
    return out.logits[0, -forced.shape[1] :]  # [G-1, V]


def score_gold(loaded: LoadedModel, state: PrefillState, gold_ids: Sequence[int]) -> GoldScore:
    """Log-prob of ``gold_ids`` after the prompt; the cache is left holding exactly the prompt."""
    import torch

    rows = state.next_logprobs[None]  # [1, V]
    if len(gold_ids) > 1:
        forced = torch.tensor([list(gold_ids)[:-1]], dtype=torch.long, device=state.input_ids.device)  # [1, G-1]
        if _can_crop(state.cache, state.prompt_tokens + forced.shape[1]):
            logits = _gold_logits_with_cache(loaded, state, forced)
        else:
            logits = _gold_logits_without_cache(loaded, state, forced)
        rows = torch.cat([rows, logits.float().log_softmax(-1).to(rows.device)])  # [G, V]
    return gold_score_from_logits(rows, gold_ids)


def gold_score_from_logits(logits: torch.Tensor, gold_ids: Sequence[int]) -> GoldScore:
    """Score from next-token logits (or log-probs) at the last prompt position and after each gold token.

    ``logits`` ``[>= G, V]``: row 0 predicts ``gold[0]``, row ``j`` predicts ``gold[j]`` given ``gold[:j]``.
    """
    import torch

    gold = torch.tensor([int(t) for t in gold_ids], dtype=torch.long, device=logits.device)  # [G]
    logprobs = logits[: gold.shape[0]].float().log_softmax(-1).gather(-1, gold[:, None])[:, 0]  # [G]
    total = float(logprobs.sum())
    return GoldScore(
        logprob_sum=total,
        logprob_mean=total / gold.shape[0],
        first_token_is_argmax=int(logits[0].argmax()) == int(gold[0]),
    )


def greedy_decode(
    loaded: LoadedModel,
    state: PrefillState,
    max_new_tokens: int,
    stop_token_ids: Sequence[int],
    step_context: Callable[[int], AbstractContextManager[Any] | None] | None = None,
) -> list[int]:
    """Argmax tokens from the prefill distribution on; the stop token, if hit, is the last id returned.

    ``step_context(k)``, if given, is entered around the forward that feeds generated token ``k - 1``
    (``k = 1, 2, ...``; None: no context): the slot for capturing attention at decode steps.
    """
    if max_new_tokens < 1:
        return []
    first = int(state.next_logprobs.argmax())  # argmax of log-probs = argmax of logits
    return continue_greedy(loaded, state, [first], max_new_tokens, stop_token_ids, step_context)


def continue_greedy(
    loaded: LoadedModel,
    state: PrefillState,
    generated: list[int],
    max_new_tokens: int,
    stop_token_ids: Sequence[int],
    step_context: Callable[[int], AbstractContextManager[Any] | None] | None = None,
) -> list[int]:
    """Greedy decoding after ``generated``: the cache holds the prompt and all of it but the last token."""
    stops = set(stop_token_ids)
    generated = list(generated)
    while generated[-1] not in stops and len(generated) < max_new_tokens:
        context = step_context(len(generated)) if step_context is not None else None
        out = _feed(loaded, state, [generated[-1]], context)
        generated.append(int(out.logits[0, -1].float().argmax()))  # float32 like generate(): ties break alike
    return generated


def _feed(loaded: LoadedModel, state: PrefillState, tokens: list[int], context: AbstractContextManager[Any] | None):
    """Run ``tokens`` on ``state.cache`` (``context`` around that forward); the state keeps the grown cache."""
    import torch

    step = torch.tensor([tokens], dtype=torch.long, device=state.input_ids.device)  # [1, T]
    with context if context is not None else nullcontext():
        out = loaded.model(input_ids=step, use_cache=True, **_with_cache(loaded.model, state.cache))
    state.cache = _output_cache(out)
    return out


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
    prefill_context: AbstractContextManager[Any] | None = None,
    prefix: PrefixCache | None = None,
    prefix_tokens: int = 0,
    decode_context: Callable[[int], AbstractContextManager[Any] | None] | None = None,
    answer_tail: Sequence[int] | None = None,
) -> TrialOutput:
    """Run ``input_ids`` once: the gold answer's log-prob and the greedy answer from the same forward.

    The prompt is fed together with a draft answer (``models/draft.py``): the gold answer, then
    ``answer_tail`` (None: what this model generated after the gold answer last time). Greedy tokens
    are read off that forward for as long as the draft agrees; one-token decoding goes on after the
    first disagreement. A model's first trial, and models whose cache cannot be cut back, take the
    classic path instead: prompt forward, gold forward on the cache, then one-token decoding.

    ``stop_token_ids`` None means ``loaded.stop_token_ids`` (tokenizer and generation-config eos);
    an empty sequence decodes exactly ``max_new_tokens``. ``generated_token_ids`` ends with the stop
    id when one was hit (as ``generate`` does); the text skips special tokens.
    ``prefill_context`` is entered around the one forward that feeds the prompt (the slot for
    attention capture, e.g. ``capture.record(rows, spans)``; read its result after the call).

    Prefix reuse: with ``prefix`` (a ``PrefixCache``) the prompt's longest part already in that shared
    cache is not fed again; afterwards the cache is cut to the first ``prefix_tokens`` tokens of this
    prompt, ready for the next trial (trials in ascending ``prefix_tokens`` grow it by their own
    forward: no separate prefix forward). Capture rows stay prompt positions (the recording is
    shifted); they must lie after the prefix.
    ``decode_context(k)`` is entered around decode forward ``k`` (see ``greedy_decode``): the forward
    that feeds answer token ``k - 1``. On the draft path those forwards are replayed one token each from
    the prompt for as long as ``decode_context`` returns a context (the rows capture wants).
    """
    import torch

    if len(input_ids) == 0:
        raise ValueError("run_prompt: input_ids is empty")
    if len(gold_ids) == 0:
        raise ValueError("run_prompt: gold_ids is empty; the gold answer must have at least one token")
    stops = loaded.stop_token_ids if stop_token_ids is None else tuple(stop_token_ids)
    memory = memory_of(loaded.model)
    tail = memory.tail if answer_tail is None else tuple(answer_tail)
    started = time.perf_counter()
    with torch.inference_mode():
        answer = _answer_on_prefix(loaded, memory, input_ids, gold_ids, max_new_tokens, stops, tail, prefill_context,
                                   decode_context, prefix, prefix_tokens)  # fmt: skip
    learned = tail_after_gold(answer.generated, gold_ids)
    if learned is not None and answer_tail is None:
        memory.tail = learned
    return TrialOutput(
        generated_text=loaded.tokenizer.decode(answer.generated, skip_special_tokens=True),
        generated_token_ids=tuple(answer.generated),
        gold_token_ids=tuple(int(token) for token in gold_ids),
        gold_logprob_sum=answer.gold.logprob_sum,
        gold_logprob_mean=answer.gold.logprob_mean,
        gold_first_token_is_argmax=answer.gold.first_token_is_argmax,
        elapsed_s=time.perf_counter() - started,
    )


def _answer_on_prefix(
    loaded, memory, input_ids, gold_ids, max_new_tokens, stops, tail, prefill_context, decode_context, prefix,
    prefix_tokens,
) -> _Answer:
    """Take the shared prefix (if any), pick the draft or the classic path, and keep the new prefix after."""
    total = len(input_ids) + max(len(gold_ids), max_new_tokens)  # the longest the cache grows
    past, _ = (None, 0) if prefix is None else prefix.acquire(input_ids[:prefix_tokens], total)
    try:
        if past is not None or (memory.crop_limit is not None and total < memory.crop_limit):
            draft = answer_draft(gold_ids, tail, max_new_tokens)
            answer = _answer_with_draft(loaded, input_ids, gold_ids, draft, max_new_tokens, stops,
                                        prefill_context, decode_context, past)  # fmt: skip
        else:
            answer = _answer_classic(loaded, input_ids, gold_ids, max_new_tokens, stops, prefill_context,
                                     decode_context)  # fmt: skip
            memory.crop_limit = crop_limit(answer.cache)
    except BaseException:
        if prefix is not None:
            prefix.reset()  # a failed forward leaves the shared cache in an unknown state
        raise
    if prefix is not None:
        prefix.keep(answer.cache, input_ids[:prefix_tokens], total)
    return answer


def _answer_classic(loaded, input_ids, gold_ids, max_new_tokens, stops, prefill_context, decode_context) -> _Answer:
    """Prompt forward, gold forward on its cache (cropped back), then one-token greedy decoding."""
    state = prefill(loaded, input_ids, prefill_context)
    gold = score_gold(loaded, state, gold_ids)
    generated = greedy_decode(loaded, state, max_new_tokens, stops, decode_context)
    return _Answer(gold, generated, state.cache)


def _answer_with_draft(
    loaded, input_ids, gold_ids, draft, max_new_tokens, stops, prefill_context, decode_context, past
) -> _Answer:
    """One forward over prompt + draft; one-token decoding only where the draft and greedy part."""
    import torch

    forward = forward_with_draft(loaded, input_ids, draft, past, prefill_context)
    gold = gold_score_from_logits(forward.logits, gold_ids)
    if max_new_tokens < 1:
        return _Answer(gold, [], forward.cache)
    generated, accepted, finished = greedy_from_draft(forward.logits, draft, stops, max_new_tokens)
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=loaded.device)
    if decode_context is not None:  # decode rows need forwards of their own: replay them from the prompt
        if draft:
            forward.cache.crop(-len(draft))
        state = PrefillState(ids, forward.cache, forward.logits[0].log_softmax(-1))
        return _Answer(gold, _replay_decode_rows(loaded, state, generated, finished, max_new_tokens, stops,
                                                 decode_context), state.cache)  # fmt: skip
    if finished:
        return _Answer(gold, generated, forward.cache)
    if accepted < len(draft):
        forward.cache.crop(-(len(draft) - accepted))  # keep the prompt and the agreed tokens
    state = PrefillState(ids, forward.cache, forward.logits[accepted].log_softmax(-1))
    return _Answer(gold, continue_greedy(loaded, state, generated, max_new_tokens, stops), state.cache)


def _replay_decode_rows(
    loaded: LoadedModel,
    state: PrefillState,
    known: list[int],
    finished: bool,
    max_new_tokens: int,
    stops: Sequence[int],
    decode_context: Callable[[int], AbstractContextManager[Any] | None],
) -> list[int]:
    """Decode forwards ``k = 1, 2, ...`` one token each while ``decode_context(k)`` wants a row, feeding
    tokens already known from the draft; the rest of the known answer in one forward, then greedy decoding.

    ``state.cache`` holds the prompt; ``known`` are the greedy tokens the draft forward gave (``finished``:
    they end the answer). Each forward is the one plain decoding would run, so the rows are the same.
    """
    known = list(known)
    fed = 0  # known tokens in the cache after the prompt
    while fed < len(known) - int(finished):  # decode forward fed + 1 feeds known[fed]
        context = decode_context(fed + 1)
        if context is None:
            break
        out = _feed(loaded, state, [known[fed]], context)
        fed += 1
        if fed == len(known):  # every known token is in: plain greedy decoding from here
            known.append(int(out.logits[0, -1].float().argmax()))
            return continue_greedy(loaded, state, known, max_new_tokens, stops, decode_context)
    if finished:
        return known
    if fed < len(known) - 1:
        _feed(loaded, state, known[fed:-1], None)  # agreed tokens whose rows nobody wants: one forward
    return continue_greedy(loaded, state, known, max_new_tokens, stops, decode_context)

"""Run one prompt: a single prefill serves the gold-answer log-prob and greedy generation.

    prefill(prompt)            -> KV cache + log-probs at the last prompt position
    score_gold(cache, gold)    -> teacher-force gold[:-1] on the cache in one forward, then crop it back
    greedy_decode(cache)       -> argmax token by token from the prefill logits until a stop id

Greedy decoding is plain argmax: the model's generation_config sampling and penalties (temperature,
repetition_penalty, ...) are deliberately ignored, so outputs equal ``generate(do_sample=False)`` with
default logits processors and are reproducible across models. Batch size is 1 for now; tensors keep
the batch dimension so a batched version can reuse the shapes.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.errors import ModelLoadError
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
    """Run the prompt once with a cache; ``context`` is entered around exactly this one forward.

    ``past_cache`` (optional) already holds the first ``past_cache.get_seq_length()`` tokens of
    ``input_ids`` (a shared prefix, see ``models/prefix.py``): only the rest is fed, as an extension
    of it, and the returned state owns that cache. A context with ``set_query_start(start)`` (an
    attention recording) is told where the forward's first query sits in the prompt.
    """
    import torch

    model = loaded.model
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=loaded.device)  # [1, L]
    start = 0 if past_cache is None else int(past_cache.get_seq_length())
    if not 0 <= start < ids.shape[1]:
        raise ValueError(f"prefill: the past cache holds {start} tokens, the prompt has {ids.shape[1]}")
    # only the last position's logits: [1, L, V] would not fit at 100k+ tokens
    extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}
    if past_cache is not None:
        extra.update(_with_cache(model, past_cache))
    if context is not None and hasattr(context, "set_query_start"):
        context.set_query_start(start)
    with context if context is not None else nullcontext():
        out = model(input_ids=ids[:, start:], use_cache=True, **extra)
    cache = _output_cache(out)
    if cache is None:
        raise ModelLoadError(f"model {loaded.name!r} returned no KV cache with use_cache=True; evalkit needs one")
    last = out.logits[0, -1].float().log_softmax(-1)  # [V]
    return PrefillState(input_ids=ids, cache=cache, next_logprobs=last)


def _can_crop(cache: Any, length_tokens: int) -> bool:
    """Whether ``cache`` can be rolled back after growing to ``length_tokens`` without losing prompt states."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
    except ImportError:
        return False
    if not isinstance(cache, DynamicCache) or not hasattr(cache, "layers"):
        return False
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            continue
        # a sliding layer drops its oldest states once full: only croppable while everything fits
        if type(layer) is DynamicSlidingWindowLayer and length_tokens < layer.sliding_window:
            continue
        return False  # linear-attention / quantized / custom layers: crop is missing or lossy
    return True


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

    gold = torch.tensor([list(gold_ids)], dtype=torch.long, device=state.next_logprobs.device)  # [1, G]
    first = state.next_logprobs[gold[0, 0]]
    logprobs = [first.reshape(1)]
    if gold.shape[1] > 1:
        forced = gold[:, :-1].to(state.input_ids.device)  # gold[-1] predicts nothing we score
        if _can_crop(state.cache, state.prompt_tokens + forced.shape[1]):
            logits = _gold_logits_with_cache(loaded, state, forced)
        else:
            logits = _gold_logits_without_cache(loaded, state, forced)
        rest = logits.float().log_softmax(-1)  # [G-1, V]
        logprobs.append(rest.gather(-1, gold[0, 1:, None].to(rest.device))[:, 0].to(first.device))
    total = float(torch.cat(logprobs).sum())
    return GoldScore(
        logprob_sum=total,
        logprob_mean=total / gold.shape[1],
        first_token_is_argmax=int(state.next_logprobs.argmax()) == int(gold[0, 0]),
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
    import torch

    stops = set(stop_token_ids)
    generated: list[int] = []
    logits = state.next_logprobs  # [V]; argmax of log-probs = argmax of logits
    while len(generated) < max_new_tokens:
        token = int(logits.argmax())
        generated.append(token)
        if token in stops or len(generated) == max_new_tokens:
            break
        step = torch.tensor([[token]], dtype=torch.long, device=state.input_ids.device)  # [1, 1]
        context = step_context(len(generated)) if step_context is not None else None
        with context if context is not None else nullcontext():
            out = loaded.model(input_ids=step, use_cache=True, **_with_cache(loaded.model, state.cache))
        state.cache = _output_cache(out)
        logits = out.logits[0, -1].float()  # float32 like generate(), so ties break the same way
    return generated


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
) -> TrialOutput:
    """Prefill ``input_ids`` once, score ``gold_ids`` on that cache, then decode greedily.

    ``stop_token_ids`` None means ``loaded.stop_token_ids`` (tokenizer and generation-config eos);
    an empty sequence decodes exactly ``max_new_tokens``. ``generated_token_ids`` ends with the stop
    id when one was hit (as ``generate`` does); the text skips special tokens.
    ``prefill_context`` is entered around the prompt forward only (one forward: the slot for
    attention capture, e.g. ``capture.record(rows, spans)``; read its result after the call).

    Prefix reuse: with ``prefix`` (a ``PrefixCache``) the first ``prefix_tokens`` tokens of the prompt
    come from that shared cache (grown or cut to them first); the prompt forward feeds only the rest,
    and the cache is cropped back to the prefix afterwards, ready for the next trial. Capture rows
    given to an ``AttentionCapture.record`` stay prompt positions (the recording is shifted); they
    must lie after the prefix.
    ``decode_context(k)`` is entered around decode forward ``k`` (see ``greedy_decode``).
    """
    import torch

    if len(input_ids) == 0:
        raise ValueError("run_prompt: input_ids is empty")
    if len(gold_ids) == 0:
        raise ValueError("run_prompt: gold_ids is empty; the gold answer must have at least one token")
    stops = loaded.stop_token_ids if stop_token_ids is None else tuple(stop_token_ids)
    started = time.perf_counter()
    with torch.inference_mode():
        past = None
        if prefix is not None:  # None when the model's cache cannot be cut back: a plain prefill then
            past = prefix.acquire(input_ids[:prefix_tokens], len(input_ids) + len(gold_ids) + max_new_tokens)
        try:
            state = prefill(loaded, input_ids, prefill_context, past_cache=past)
            gold = score_gold(loaded, state, gold_ids)
            generated = greedy_decode(loaded, state, max_new_tokens, stops, decode_context)
        finally:
            if past is not None:
                prefix.rollback()  # the trial's own tokens leave the shared cache, even on error
    return TrialOutput(
        generated_text=loaded.tokenizer.decode(generated, skip_special_tokens=True),
        generated_token_ids=tuple(generated),
        gold_token_ids=tuple(int(token) for token in gold_ids),
        gold_logprob_sum=gold.logprob_sum,
        gold_logprob_mean=gold.logprob_mean,
        gold_first_token_is_argmax=gold.first_token_is_argmax,
        elapsed_s=time.perf_counter() - started,
    )

"""The classic path of one prompt, in three steps (the draft path's fallback and reference):

    prefill(prompt)            -> KV cache + log-probs at the last prompt position
    score_gold(cache, gold)    -> teacher-force gold[:-1] on the cache in one forward, then put the cache
                                  back (``forward.CacheRollback``: crops, and restores sliding windows)
    greedy_decode(cache)       -> argmax token by token from the prefill logits until a stop id

Greedy decoding is plain argmax: the model's generation_config sampling and penalties (temperature,
repetition_penalty, ...) are deliberately ignored, so outputs equal ``generate(do_sample=False)`` with
default logits processors and are reproducible across models. Batch size is 1 here (``batch.py``
batches); tensors keep the batch dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.models.draft import forward_with_draft
from evalkit.models.forward import (
    CacheRollback,
    GoldScore,
    accepts,
    cache_kwargs,
    can_roll_back,
    gold_score_from_logits,
    greedy_token,
    output_cache,
)
from evalkit.models.hf import LoadedModel

if TYPE_CHECKING:
    import torch

__all__ = ["PrefillState", "continue_greedy", "feed", "greedy_decode", "prefill", "score_gold"]

StepContext = Callable[[int], "AbstractContextManager[Any] | None"]


@dataclass
class PrefillState:
    """The model state after the prompt: its cache and the next-token distribution."""

    input_ids: torch.Tensor  # [1, prompt_tokens] on the model's input device
    cache: Any  # the model's KV cache (a DynamicCache for most families), holding exactly the prompt
    next_logprobs: torch.Tensor  # [vocab] float32 log-softmax at the last prompt position

    @property
    def prompt_tokens(self) -> int:
        """Number of prompt tokens the state was built from."""
        return int(self.input_ids.shape[1])


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


def _gold_logits_on_cache(loaded: LoadedModel, state: PrefillState, forced: torch.Tensor) -> torch.Tensor:
    # gold[:-1] on the prompt's cache, then the cache put back: full layers cropped, sliding layers past their
    # window (which dropped their oldest states) restored from a copy (forward.CacheRollback)
    rollback = CacheRollback(state.cache)
    out = loaded.model(input_ids=forced, use_cache=True, **cache_kwargs(loaded.model, state.cache))
    rollback.undo()
    if state.cache.get_seq_length() != state.prompt_tokens:
        raise RuntimeError(
            f"cache holds {state.cache.get_seq_length()} tokens after its rollback, expected {state.prompt_tokens}"
        )
    return out.logits[0]  # [G-1, V]


def _gold_logits_without_cache(loaded: LoadedModel, state: PrefillState, forced: torch.Tensor) -> torch.Tensor:
    # Fallback for caches that can be neither cropped nor rolled back (linear-attention states, quantized or
    # custom caches): a separate forward over prompt + gold[:-1], leaving the
    # prefill cache untouched for decoding. It costs a second prefill, only for those models.
    import torch

    model = loaded.model
    ids = torch.cat([state.input_ids, forced], dim=1)  # [1, L + G - 1]
    extra = {"logits_to_keep": forced.shape[1]} if accepts(model, "logits_to_keep") else {}
    out = model(input_ids=ids, use_cache=False, **extra)
    return out.logits[0, -forced.shape[1] :]  # [G-1, V]


def score_gold(loaded: LoadedModel, state: PrefillState, gold_ids: Sequence[int]) -> GoldScore:
    """Log-prob of ``gold_ids`` after the prompt; the cache is left holding exactly the prompt."""
    import torch

    rows = state.next_logprobs[None]  # [1, V]
    if len(gold_ids) > 1:
        forced = torch.tensor([list(gold_ids)[:-1]], dtype=torch.long, device=state.input_ids.device)  # [1, G-1]
        if can_roll_back(state.cache):
            logits = _gold_logits_on_cache(loaded, state, forced)
        else:
            logits = _gold_logits_without_cache(loaded, state, forced)
        rows = torch.cat([rows, logits.float().log_softmax(-1).to(rows.device)])  # [G, V]
    return gold_score_from_logits(rows, gold_ids)


def greedy_decode(
    loaded: LoadedModel,
    state: PrefillState,
    max_new_tokens: int,
    stop_token_ids: Sequence[int],
    step_context: StepContext | None = None,
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
    step_context: StepContext | None = None,
) -> list[int]:
    """Greedy decoding after ``generated``: the cache holds the prompt and all of it but the last token."""
    stops = set(stop_token_ids)
    generated = list(generated)
    while generated[-1] not in stops and len(generated) < max_new_tokens:
        context = step_context(len(generated)) if step_context is not None else None
        out = feed(loaded, state, [generated[-1]], context)
        generated.append(int(greedy_token(out.logits[0, -1])))
    return generated


def feed(loaded: LoadedModel, state: PrefillState, tokens: list[int], context: AbstractContextManager[Any] | None):
    """Run ``tokens`` on ``state.cache`` (``context`` around that forward); the state keeps the grown cache."""
    import torch

    step = torch.tensor([tokens], dtype=torch.long, device=state.input_ids.device)  # [1, T]
    with context if context is not None else nullcontext():
        out = loaded.model(input_ids=step, use_cache=True, **cache_kwargs(loaded.model, state.cache))
    state.cache = output_cache(out)
    return out

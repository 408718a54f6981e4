"""Forward and cache helpers shared by the one-prompt path, the draft, prefix reuse and batches.

A leaf of ``evalkit.models``: it imports nothing else from the package, so ``single.py``, ``draft.py``,
``prefix.py`` and ``batch.py`` all build on it without cycles. What lives here:

    accepts / cache_kwargs / output_cache   call a transformers forward across 5.x versions
    crop_limit / can_crop / probe_crop_limit    whether a KV cache can be cut back exactly (and how far)
    can_roll_back / CacheRollback           undo a forward on a cache, sliding windows past their size included
    GoldScore / gold_score_from_logits      the gold answer's teacher-forced log-prob from next-token rows
    greedy_token / trial_output             one argmax step and the ``TrialOutput`` every path returns
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.types import TrialOutput

if TYPE_CHECKING:
    import torch

__all__ = [
    "CacheRollback", "GoldScore", "accepts", "cache_kwargs", "can_crop", "can_roll_back", "crop_limit",
    "gold_score_from_logits", "greedy_token", "output_cache", "probe_crop_limit", "trial_output",
]  # fmt: skip


def accepts(model: Any, argument: str) -> bool:
    """Whether ``model.forward`` takes a keyword called ``argument`` (e.g. ``logits_to_keep``)."""
    return argument in inspect.signature(model.forward).parameters


def cache_kwargs(model: Any, cache: Any) -> dict[str, Any]:
    """The forward keyword for a KV cache: ``cache`` from transformers 5.2x on, ``past_key_values`` before."""
    return {"cache": cache} if accepts(model, "cache") else {"past_key_values": cache}


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned (None when it returned none)."""
    # newer outputs name the field ``cache`` (``past_key_values`` still works there but warns)
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def crop_limit(cache: Any) -> float:
    """Total length (tokens) below which ``cache`` can be cut back exactly: inf, a window, or 0 (never)."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
    except ImportError:
        return 0
    if not isinstance(cache, DynamicCache) or not hasattr(cache, "layers"):
        return 0
    limit = math.inf
    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            continue
        # a sliding layer drops its oldest states once full: croppable only while everything fits
        if type(layer) is DynamicSlidingWindowLayer:
            limit = min(limit, layer.sliding_window)
            continue
        return 0  # linear-attention / quantized / custom layers: crop is missing or lossy
    return limit


def can_crop(cache: Any, length_tokens: int) -> bool:
    """Whether ``cache`` can be rolled back after growing to ``length_tokens`` without losing prompt states."""
    return length_tokens < crop_limit(cache)


def can_roll_back(cache: Any) -> bool:
    """Whether ``CacheRollback`` can undo a forward on ``cache``: a ``DynamicCache`` of full and sliding-window
    layers only (linear-attention, quantized and custom layers are not copied or cut back exactly). Every cache
    ``can_crop`` accepts is one; unlike a crop, a rollback also undoes a forward that pushed a sliding window
    past its size."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer, DynamicSlidingWindowLayer
    except ImportError:
        return False
    if not isinstance(cache, DynamicCache) or not isinstance(getattr(cache, "layers", None), list):
        return False
    return all(type(layer) in (DynamicLayer, DynamicSlidingWindowLayer) for layer in cache.layers)


class CacheRollback:
    """Undo the forwards run on a cache after this point, also where a crop cannot: sliding-window layers drop
    their oldest states once past their window (Gemma 2/3, Mistral past its window).

    Each sliding layer is copied now (its states hold at most a window: small whatever the prompt) and put back
    by ``undo``; the full layers are cut back to the length they have now. A forward on the gold answer then
    costs the answer's tokens, not a second prefill of the whole prompt (``classic.score_gold``).
    """

    def __init__(self, cache: Any) -> None:
        from transformers.cache_utils import DynamicSlidingWindowLayer

        self.cache = cache
        self.lengths = [layer.get_seq_length() for layer in cache.layers]
        self.sliding = {i: copy.deepcopy(layer) for i, layer in enumerate(cache.layers)
                        if type(layer) is DynamicSlidingWindowLayer}

    def undo(self) -> None:
        """Put the cache back as it was when this rollback was made."""
        for index, layer in enumerate(self.cache.layers):
            if index in self.sliding:
                self.cache.layers[index] = self.sliding[index]
                continue
            added = layer.get_seq_length() - self.lengths[index]
            if added > 0:
                layer.crop(-added)  # negative: remove that many tokens (the same in every transformers 5.x)


def probe_crop_limit(model: Any, device: str) -> float:
    """``crop_limit`` of the cache ``model`` builds, from one one-token forward (before any trial).

    The cache type follows the model config (sliding windows, ``layer_types``, linear attention), so
    knowing it up front makes every trial take the same path, whatever ran before it (Gemma 3's
    sliding layers refuse a crop past their window: such prompts must never take the draft path).
    """
    import torch

    token = torch.zeros((1, 1), dtype=torch.long, device=device)  # [1, 1]; any id: only the cache type matters
    extra = {"logits_to_keep": 1} if accepts(model, "logits_to_keep") else {}
    with torch.inference_mode():
        return crop_limit(output_cache(model(input_ids=token, use_cache=True, **extra)))


@dataclass(frozen=True)
class GoldScore:
    """Teacher-forced log-probability of the gold answer tokens after the prompt."""

    logprob_sum: float
    logprob_mean: float  # per gold token
    first_token_is_argmax: bool  # gold[0] is the greedy choice at the last prompt position


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


def greedy_token(logits: torch.Tensor) -> Any:
    """Argmax over the last dimension in float32 (as ``generate`` does, so ties break alike); ``[..., V] -> [...]``."""
    return logits.float().argmax(-1)


def trial_output(
    tokenizer: Any, generated: Sequence[int], gold_ids: Sequence[int], gold: GoldScore, elapsed_s: float,
    attention: object | None = None,
) -> TrialOutput:
    """The ``TrialOutput`` of one prompt; the text skips special tokens (the stop id stays in the ids)."""
    return TrialOutput(
        generated_text=tokenizer.decode(list(generated), skip_special_tokens=True),
        generated_token_ids=tuple(int(t) for t in generated),
        gold_token_ids=tuple(int(t) for t in gold_ids),
        gold_logprob_sum=gold.logprob_sum,
        gold_logprob_mean=gold.logprob_mean,
        gold_first_token_is_argmax=gold.first_token_is_argmax,
        elapsed_s=elapsed_s,
        attention=attention,
    )

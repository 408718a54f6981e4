"""Run several prompts in one batch: one prefill for all, gold scoring and greedy decoding batched too.

Same results as ``single.run_prompt`` per prompt (answers equal, log-probs within float noise), so batching
is only a speed choice. Prompts of unequal length are left-padded; the attention mask hides the pads
and explicit position ids restart at 0 on each prompt's first real token, so absolute-position models
(GPT-2) see the same positions as unbatched. Equal-length prompts (the default: every prompt has exactly
its context length) need no padding and no mask at all.

Memory: with padding (or a sliding window) transformers builds an explicit ``[B, 1, L, L]`` mask under
sdpa; at long lengths that mask alone is ``B * L * L`` bytes (32k tokens: 1 GiB per prompt), so prefer
batch size 1 without padding there. A region span ``[s, e)`` of prompt ``b`` is ``[pads[b] + s,
pads[b] + e)`` in the batch (see ``batch_layout``): shift capture spans (and rows) by it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from evalkit.models.forward import (
    CacheRollback,
    GoldScore,
    accepts,
    cache_kwargs,
    can_roll_back,
    gold_score_from_logits,
    greedy_token,
    output_cache,
    trial_output,
)
from evalkit.models.hf import LoadedModel
from evalkit.types import TrialOutput

__all__ = ["BatchLayout", "batch_layout", "run_batch"]


@dataclass(frozen=True)
class BatchLayout:
    """How prompts sit in a left-padded batch."""

    length_tokens: int  # padded length: the longest prompt
    pads: tuple[int, ...]  # left pad tokens before each prompt

    @property
    def padded(self) -> bool:
        return any(self.pads)


def batch_layout(prompts: Sequence[Sequence[int]]) -> BatchLayout:
    """Left-padding layout of ``prompts`` (pads shift every region span of that prompt)."""
    longest = max(len(p) for p in prompts)
    return BatchLayout(longest, tuple(longest - len(p) for p in prompts))


@dataclass
class _Batch:
    """Tensors of one batch while it runs."""

    ids: Any  # [B, L] left-padded prompt ids
    mask: Any  # [B, L] 1 = real token, or None when nothing is padded
    lengths: Any  # [B] real tokens per prompt (the next position id of each prompt)

    def forward_args(self, new_tokens: int, past_tokens: int) -> dict[str, Any]:
        """attention_mask and position_ids for ``new_tokens`` after ``past_tokens`` (pads included)."""
        import torch

        if self.mask is None:
            return {}  # no padding: causal attention and cache positions are already right
        batch = self.mask.shape[0]
        grown = past_tokens + new_tokens - self.mask.shape[1]
        mask = torch.cat([self.mask, self.mask.new_ones(batch, grown)], dim=1) if grown > 0 else self.mask
        if past_tokens == 0:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
        else:  # tokens after the prompt: positions continue from each prompt's own length
            offset = past_tokens - self.mask.shape[1]
            steps = torch.arange(offset, offset + new_tokens, device=mask.device)
            positions = self.lengths[:, None] + steps[None, :]
        return {"attention_mask": mask[:, : past_tokens + new_tokens], "position_ids": positions}


def run_batch(
    loaded: LoadedModel,
    prompts: Sequence[Sequence[int]],
    golds: Sequence[Sequence[int]],
    max_new_tokens: int,
    stop_token_ids: Sequence[int] | None = None,
    prefill_context: AbstractContextManager[Any] | None = None,
) -> list[TrialOutput]:
    """``single.run_prompt`` for several prompts at once; ``elapsed_s`` of each output is the batch time / B.

    ``prefill_context`` is entered around the one batched prompt forward (capture rows and spans are
    batch positions: shift them by ``batch_layout(prompts).pads``).
    """
    import torch

    if not prompts or len(prompts) != len(golds) or min(len(p) for p in prompts) == 0 or min(len(g) for g in golds) == 0:
        raise ValueError("run_batch: needs as many non-empty prompts as non-empty gold answers")
    stops = loaded.stop_token_ids if stop_token_ids is None else tuple(stop_token_ids)
    started = time.perf_counter()
    with torch.inference_mode():
        batch, cache, next_logprobs = _prefill(loaded, prompts, prefill_context)
        scores = _score_gold(loaded, batch, cache, next_logprobs, golds)
        generated = _decode(loaded, batch, cache, next_logprobs, max_new_tokens, stops)
    elapsed = (time.perf_counter() - started) / len(prompts)
    return [
        trial_output(loaded.tokenizer, tokens, gold, score, elapsed)
        for tokens, gold, score in zip(generated, golds, scores)
    ]


def _prefill(loaded: LoadedModel, prompts: Sequence[Sequence[int]], context: AbstractContextManager[Any] | None):
    import torch

    layout = batch_layout(prompts)
    pad_id = loaded.tokenizer.pad_token_id if loaded.tokenizer.pad_token_id is not None else 0
    rows = [[pad_id] * pad + list(p) for pad, p in zip(layout.pads, prompts)]
    ids = torch.tensor(rows, dtype=torch.long, device=loaded.device)  # [B, L]
    mask = None
    if layout.padded:
        mask = torch.tensor([[0] * pad + [1] * len(p) for pad, p in zip(layout.pads, prompts)], device=loaded.device)
    lengths = torch.tensor([len(p) for p in prompts], device=loaded.device)  # [B]
    batch = _Batch(ids, mask, lengths)
    extra = {"logits_to_keep": 1} if accepts(loaded.model, "logits_to_keep") else {}
    with context if context is not None else nullcontext():
        out = loaded.model(input_ids=ids, use_cache=True, **batch.forward_args(ids.shape[1], 0), **extra)
    return batch, output_cache(out), out.logits[:, -1].float().log_softmax(-1)  # [B, V]


def _score_gold(loaded: LoadedModel, batch: _Batch, cache: Any, next_logprobs, golds) -> list[GoldScore]:
    """The gold score of each prompt (``forward.gold_score_from_logits``); the cache is left holding the prompts."""
    import torch

    longest = max(len(g) for g in golds)
    pad_id = golds[0][0]  # any id: tokens after a prompt's own gold are never scored
    forced = torch.tensor([list(g[:-1]) + [pad_id] * (longest - len(g)) for g in golds], device=batch.ids.device)
    rows = next_logprobs[:, None]  # [B, 1, V]: row 0 of each prompt predicts its gold[0]
    if longest > 1:
        past = batch.ids.shape[1]
        if can_roll_back(cache):  # put back after the gold: cropped, sliding windows restored (forward.py)
            rollback = CacheRollback(cache)
            args = batch.forward_args(longest - 1, past)
            out = loaded.model(input_ids=forced, use_cache=True, **args, **cache_kwargs(loaded.model, cache))
            rollback.undo()
            logits = out.logits  # [B, G-1, V]
        else:  # neither cut back nor put back (linear-attention, quantized caches): one forward without it
            args = batch.forward_args(past + longest - 1, 0)
            ids = torch.cat([batch.ids, forced], dim=1)
            extra = {"logits_to_keep": longest - 1} if accepts(loaded.model, "logits_to_keep") else {}
            out = loaded.model(input_ids=ids, use_cache=False, **args, **extra)
            logits = out.logits[:, -(longest - 1) :]  # [B, G-1, V]: after gold[:-1]
        rows = torch.cat([rows, logits.float().log_softmax(-1).to(rows.device)], dim=1)  # [B, G, V]
    return [gold_score_from_logits(rows[b], gold) for b, gold in enumerate(golds)]


def _decode(loaded: LoadedModel, batch: _Batch, cache: Any, next_logprobs, max_new_tokens: int, stops) -> list[list[int]]:
    """Greedy tokens per prompt until its stop id or ``max_new_tokens``; finished prompts idle along."""
    stop_set = set(stops)
    generated: list[list[int]] = [[] for _ in range(next_logprobs.shape[0])]
    done = [False] * len(generated)
    tokens = next_logprobs.argmax(-1)  # [B]
    past = batch.ids.shape[1]
    while True:
        for b, token in enumerate(tokens.tolist()):
            if not done[b]:
                generated[b].append(token)
                done[b] = token in stop_set or len(generated[b]) == max_new_tokens
        if all(done):
            return generated
        args = batch.forward_args(1, past)
        out = loaded.model(input_ids=tokens[:, None], use_cache=True, **args, **cache_kwargs(loaded.model, cache))
        cache = output_cache(out)
        past += 1
        tokens = greedy_token(out.logits[:, -1])  # [B]

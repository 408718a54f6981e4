"""Prefix reuse: one KV cache of a shared prompt prefix, grown across trials instead of recomputed.

Trials of one model, task, sample and context length share their haystack tokens; only the needle's
insertion point moves (see ``prompt.py``). The prompt at depth d is::

    preamble + haystack[:b_d] | needle + haystack[b_d:] + question
    \\_______ shared prefix __/   \\_____ extension: this trial only ____/

Run in ascending ``b_d``, the prefix cache is grown by ``haystack[b_prev:b_d]`` (a forward on the
cache), the trial runs as an extension of it (``run_prompt(..., prefix=..., prefix_tokens=b_d)``),
and ``rollback`` crops the trial's tokens off again (``DynamicCache.crop``: a slice, no copy). An
11-depth grid then prefills about 40% fewer tokens than one full prefill per trial.

Reuse needs a cache that can be cut back exactly: every layer a plain ``DynamicLayer``, or a sliding
window layer that never fills up (window longer than prompt + gold + answer). Anything else
(sliding windows shorter than the prompt, linear-attention states, quantized caches) is refused by
``reusable`` and the caller runs those trials without reuse.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.models.hf import LoadedModel

__all__ = ["PrefixCache"]


class PrefixCache:
    """The KV cache of one prompt prefix (token ids ``held``), shared by the trials of a reuse group."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.held: list[int] = []  # the token ids the cache holds, in order
        self.cache: Any = None
        self.prefilled_tokens = 0  # tokens this object ran through the model (for benchmarks and logs)
        self.refused_from: int | None = None  # smallest total length at which reuse was refused

    @property
    def tokens(self) -> int:
        """Number of prefix tokens the cache holds."""
        return len(self.held)

    def extend_to(self, prefix_ids: Sequence[int]) -> Any:
        """Make the cache hold exactly ``prefix_ids``; return it (None for an empty prefix).

        Tokens already held are kept up to the first difference; the rest is cut off and the new
        tokens are run through the model in one forward on the cache.
        """
        import torch

        prefix_ids = [int(t) for t in prefix_ids]
        common = _common_length(self.held, prefix_ids)
        if common < len(self.held):
            self._cut_to(common)
        new_ids = prefix_ids[common:]
        if new_ids:
            from evalkit.models.backend import _accepts, _output_cache, _with_cache

            model = self.loaded.model
            ids = torch.tensor([new_ids], dtype=torch.long, device=self.loaded.device)  # [1, new]
            extra = {"logits_to_keep": 1} if _accepts(model, "logits_to_keep") else {}  # no logits needed
            if self.cache is not None:
                extra.update(_with_cache(model, self.cache))
            with torch.inference_mode():
                out = model(input_ids=ids, use_cache=True, **extra)
            self.cache = _output_cache(out)
            self.held = prefix_ids
            self.prefilled_tokens += len(new_ids)
        return self.cache if self.held else None

    def acquire(self, prefix_ids: Sequence[int], max_total_tokens: int) -> Any:
        """The cache holding ``prefix_ids`` for a trial that grows it to ``max_total_tokens``, or None.

        None means "run this trial without reuse": the prefix is empty, or the cache cannot be cut
        back exactly after growing that far (checked once the cache exists; a refusal is remembered
        for that total length and above, so a refused model pays at most one prefix forward).
        """
        if not prefix_ids or (self.refused_from is not None and max_total_tokens >= self.refused_from):
            return None
        cache = self.extend_to(prefix_ids)
        if not self.reusable(max_total_tokens):
            self.refused_from = max_total_tokens if self.refused_from is None else min(self.refused_from, max_total_tokens)
            self.reset()
            return None
        return cache

    def rollback(self) -> None:
        """Crop whatever a trial appended (its extension, gold and answer tokens) back to the prefix."""
        if self.cache is None:
            return
        extra = int(self.cache.get_seq_length()) - len(self.held)
        if extra > 0:
            self.cache.crop(-extra)  # negative: remove that many tokens (the same in every transformers 5.x)
        if int(self.cache.get_seq_length()) != len(self.held):
            raise RuntimeError(f"prefix cache holds {self.cache.get_seq_length()} tokens after crop, expected {len(self.held)}")

    def reusable(self, max_total_tokens: int) -> bool:
        """Whether the cache (once started) can grow to ``max_total_tokens`` and be cut back exactly."""
        from evalkit.models.backend import _can_crop

        return self.cache is not None and _can_crop(self.cache, max_total_tokens)

    def reset(self) -> None:
        """Drop the cache (a new group starts, or memory is needed)."""
        self.held, self.cache = [], None

    def _cut_to(self, length: int) -> None:
        if self.cache is None or length == 0:
            self.reset()
            return
        self.cache.crop(-(int(self.cache.get_seq_length()) - length))
        self.held = self.held[:length]


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n

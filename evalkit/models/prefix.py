"""Prefix reuse: one KV cache of a shared prompt prefix, kept across trials instead of recomputed.

Trials of one model, task, sample and context length share their haystack tokens; only the needle's
insertion point moves (see ``prompt.py``). The prompt at depth d is::

    preamble + haystack[:b_d] | needle + haystack[b_d:] + question
    \\_______ shared prefix __/   \\_____ extension: this trial only ____/

Run in ascending ``b_d``: a trial feeds only what the cache does not hold yet (``haystack[b_prev:b_d]``
and its own extension, in ONE forward, since together they are the tail of its prompt), and ``keep``
then cuts the cache back to ``b_d`` tokens (``DynamicCache.crop``: a slice, no copy) for the next one.
An 11-depth grid then feeds about 40% fewer tokens than one full prefill per trial, in as many forwards.

Reuse needs a cache that can be cut back exactly: every layer a plain ``DynamicLayer``, or a sliding
window layer that never fills up (window longer than prompt + gold + answer). Anything else
(sliding windows shorter than the prompt, linear-attention states, quantized caches) is refused by
``keep`` and the caller's later trials run without reuse; ``acquire`` also drops a kept cache for a trial
that would grow it past its window (a short context length followed by a longer one).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evalkit.models.forward import can_crop
from evalkit.models.hf import LoadedModel

__all__ = ["PrefixCache"]


class PrefixCache:
    """The KV cache of one prompt prefix (token ids ``held``), shared by the trials of a reuse group."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.held: list[int] = []  # the token ids the cache holds, in order
        self.cache: Any = None
        self.refused_from: int | None = None  # smallest total length at which reuse was refused

    @property
    def tokens(self) -> int:
        """Number of prefix tokens the cache holds."""
        return len(self.held)

    def acquire(self, prefix_ids: Sequence[int], max_total_tokens: int) -> tuple[Any, int]:
        """``(cache, start)`` for a trial whose prompt begins with ``prefix_ids`` and grows to ``max_total_tokens``.

        The cache is cut to the longest common start of what it holds and ``prefix_ids``; ``start`` is
        that many tokens (the trial feeds its prompt from there on). ``(None, 0)``: nothing shared, or
        reuse was refused for this length or more (the trial runs a plain prefill).
        """
        if self.refused_from is not None and max_total_tokens >= self.refused_from:
            return None, 0
        if self.cache is not None and not can_crop(self.cache, max_total_tokens):
            # kept for shorter trials, but this one would push a sliding window past what can be cut back
            self.reset()
            return None, 0
        common = _common_length(self.held, [int(t) for t in prefix_ids])
        self._cut_to(common)
        return (self.cache, common) if self.cache is not None else (None, 0)

    def keep(self, cache: Any, prefix_ids: Sequence[int], max_total_tokens: int) -> None:
        """After a trial: keep the first ``len(prefix_ids)`` tokens of its ``cache`` as the shared prefix.

        A cache that cannot be cut back exactly at ``max_total_tokens`` is dropped and reuse is refused
        from that length on (remembered: a refused model pays nothing more for trying).
        """
        if self.refused_from is not None and max_total_tokens >= self.refused_from:
            return
        if not prefix_ids or cache is None:
            self.reset()
            return
        if not can_crop(cache, max_total_tokens):
            self.refused_from = max_total_tokens if self.refused_from is None else min(self.refused_from, max_total_tokens)
            self.reset()
            return
        extra = int(cache.get_seq_length()) - len(prefix_ids)
        if extra > 0:
            cache.crop(-extra)  # negative: remove that many tokens (the same in every transformers 5.x)
        if int(cache.get_seq_length()) != len(prefix_ids):
            raise RuntimeError(f"prefix cache holds {cache.get_seq_length()} tokens after crop, expected {len(prefix_ids)}")
        self.cache, self.held = cache, [int(t) for t in prefix_ids]

    def reset(self) -> None:
        """Drop the cache (a new group starts, or memory is needed)."""
        self.held, self.cache = [], None

    def _cut_to(self, length: int) -> None:
        if self.cache is None or length == 0:
            self.reset()
            return
        if length < len(self.held):
            self.cache.crop(-(int(self.cache.get_seq_length()) - length))
            self.held = self.held[:length]


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id sequences."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n

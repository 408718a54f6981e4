"""Region spans of a built prompt: the frame around the context, the tiling of the five regions, depths.

A leaf of the prompt stage: ``builder.py`` (one needle) and ``multi_needle.py`` (several) both place
needles with these, so neither imports the other's internals.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from evalkit.types import (
    REGION_CONTEXT_AFTER,
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    REGION_PREAMBLE,
    REGION_QUESTION,
    TokenSpan,
)

__all__ = ["PromptFrame", "achieved_depth", "closest_boundary", "tile_regions", "unit_boundaries"]


@dataclass(frozen=True)
class PromptFrame:
    """The encoded text around the context for one set of prompt parts (needle excluded)."""

    head_ids: tuple[int, ...]  # preamble region
    tail_ids: tuple[int, ...]  # question region
    tail_text: str  # what the prompt ends with: the anchor the gold answer continues


def closest_boundary(boundary_token_offsets: list[int], depth: float) -> int:
    """Index of the boundary offset closest to ``depth * total`` (ties go to the earlier one).

    ``boundary_token_offsets`` are strictly increasing prefix sums starting at 0 and ending at the total.
    """
    target_tokens = depth * boundary_token_offsets[-1]
    right = min(bisect_left(boundary_token_offsets, target_tokens), len(boundary_token_offsets) - 1)
    if right == 0:
        return 0
    left = right - 1
    if target_tokens - boundary_token_offsets[left] <= boundary_token_offsets[right] - target_tokens:
        return left
    return right


def unit_boundaries(offsets: list[int], filler_tokens: int) -> tuple[list[int], list[int]]:
    """The boundaries a needle may take, filler not counted: each one's piece index and whole-unit tokens before it.

    ``offsets`` are the haystack pieces' boundary offsets; the first pieces, ``filler_tokens`` in all, are the
    filler that makes the exact length (``filler.fill_gap``). The filler is no unit, so depth is position among
    the whole units: boundary 0 is before the filler, and no needle goes between the filler and the first unit
    (a filler member as long as a key-value pair would otherwise take a depth cell of its own).
    """
    first_unit = offsets.index(filler_tokens)  # offsets strictly increase: the end of the filler
    if first_unit == len(offsets) - 1:  # filler alone: it is the haystack
        return list(range(len(offsets))), list(offsets)
    piece_indices = [0, *range(first_unit + 1, len(offsets))]
    return piece_indices, [offsets[i] - filler_tokens if i else 0 for i in piece_indices]


def tile_regions(
    preamble_tokens: int, before_tokens: int, needle_tokens: int, after_tokens: int, question_tokens: int
) -> dict[str, TokenSpan]:
    """Consecutive spans of the five regions, in prompt order."""
    names = (REGION_PREAMBLE, REGION_CONTEXT_BEFORE, REGION_NEEDLE, REGION_CONTEXT_AFTER, REGION_QUESTION)
    lengths = (preamble_tokens, before_tokens, needle_tokens, after_tokens, question_tokens)
    ends = list(accumulate(lengths))
    return {name: TokenSpan(end - length, end) for name, length, end in zip(names, lengths, ends)}


def achieved_depth(before_tokens: int, haystack_tokens: int, requested_depth: float) -> float:
    """Fraction of the haystack before the needle; an empty haystack counts as the nearer end."""
    if haystack_tokens == 0:
        return 0.0 if requested_depth < 0.5 else 1.0
    return before_tokens / haystack_tokens

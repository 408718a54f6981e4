"""Several needles in one haystack (multi-needle tasks): each at the boundary nearest its own depth.

The first needle is the ``needle`` region; the others sit inside the context regions and their spans
and achieved depths are in ``BuiltPrompt.extra_needle_spans`` / ``extra_needle_depths``.
"""

from __future__ import annotations

from itertools import chain
from typing import Any, Protocol

from evalkit.errors import PlacementError
from evalkit.prompt.spans import (
    PromptFrame,
    achieved_depth,
    closest_boundary,
    tile_regions,
)
from evalkit.prompt.tokenization import decode_exact, ids_sha256
from evalkit.types import BuiltPrompt, PromptParts, TokenSpan

class NeedleBuilder(Protocol):
    """What placing several needles needs from the prompt builder (``builder.PromptBuilder`` has it), named here
    so this module does not import the builder that imports it."""

    @property
    def tokenizer(self) -> Any: ...

    def without_first_space(self, parts: PromptParts, input_ids: tuple[int, ...], context_token_start: int,
                            first_ids: tuple[int, ...]) -> tuple[int, ...]: ...

    def verify(self, input_ids: tuple[int, ...], regions: dict[str, TokenSpan], needle: str, context_length: int,
               tolerance_tokens: int) -> None: ...


def place_needles(
    builder: NeedleBuilder, parts: PromptParts, frame: PromptFrame, pieces: list[tuple[int, ...]],
    boundaries: tuple[list[int], list[int]], needles: list[tuple[int, ...]], depths: list[float],
    extra_texts: list[str], context_length: int, tolerance_tokens: int,
) -> BuiltPrompt:
    """The prompt with ``needles`` (ids) at ``depths``; ``boundaries`` are the places a needle may take, as piece
    indices and whole-unit tokens before each (``spans.unit_boundaries``: filler is no unit)."""
    piece_indices, offsets = boundaries
    boundary_of = [closest_boundary(offsets, d) for d in depths]
    at_boundary = [piece_indices[b] for b in boundary_of]
    # at a shared boundary needles go in order of requested depth, then in the order given
    order = sorted(range(len(needles)), key=lambda i: (at_boundary[i], depths[i], i))
    chunks: list[tuple[int, ...]] = [frame.head_ids]
    starts: dict[int, int] = {}
    position, next_piece = len(frame.head_ids), 0
    for i in order:
        for piece in pieces[next_piece : at_boundary[i]]:
            chunks.append(piece)
            position += len(piece)
        next_piece = max(next_piece, at_boundary[i])
        starts[i] = position
        chunks.append(needles[i])
        position += len(needles[i])
    chunks += [*pieces[next_piece:], frame.tail_ids]
    input_ids = tuple(chain(*chunks))
    if len(chunks) > 2:  # the first context piece (a needle or a haystack piece) may go without its space
        input_ids = builder.without_first_space(parts, input_ids, len(frame.head_ids), chunks[1])
    head, tail = len(frame.head_ids), len(frame.tail_ids)
    main_start, main_end = starts[0], starts[0] + len(needles[0])
    lengths = (head, main_start - head, len(needles[0]), len(input_ids) - tail - main_end)
    regions = tile_regions(*lengths, tail)
    builder.verify(input_ids, regions, parts.needle, context_length, tolerance_tokens)
    extra_spans = tuple(TokenSpan(starts[i], starts[i] + len(needles[i])) for i in range(1, len(needles)))
    for span, text in zip(extra_spans, extra_texts):
        if decode_exact(builder.tokenizer, input_ids[span.token_start : span.token_end]).strip() != text.strip():
            raise PlacementError(f"needle {text.strip()!r} does not decode back from its tokens; "
                                 "use a needle this tokenizer can represent")
    haystack_tokens = offsets[-1]
    return BuiltPrompt(
        input_ids=input_ids, regions=regions, needle_text=parts.needle.strip(),
        requested_context_length=context_length, length_tolerance_tokens=tolerance_tokens,
        requested_depth=float(depths[0]),
        achieved_depth=achieved_depth(offsets[boundary_of[0]], haystack_tokens, depths[0]),
        prompt_sha256=ids_sha256(input_ids), extra_needle_spans=extra_spans,
        extra_needle_depths=tuple(achieved_depth(offsets[boundary_of[i]], haystack_tokens, depths[i])
                                  for i in range(1, len(needles))),
    )

"""Token-exact placement: a needle at a controlled depth in a haystack, hitting the context length exactly.

Every prompt is built in the model's own tokens; its regions tile ``[0, prompt_tokens)`` in order::

    preamble        [BOS] template head, system prompt, instructions, blank line
    context_before  " s1 s2 ... sk"         whole haystack sentences
    needle          " <needle>"
    context_after   " sk+1 ... sm"          whole haystack sentences (units: documents, key-value pairs)
    question        blank line, question, template tail, generation prompt, answer prefix

Joining convention: every context piece (a haystack sentence or the needle), stripped of outer
whitespace, is encoded as a mid-text fragment with exactly one leading space, ``" " + piece``, in the
context it has in running text (see ``tokenization.py``). Pieces are concatenated as ids, so the
needle has the same ids at every depth and the haystack the same ids at every depth: only the
insertion point moves. Decoded, a prompt reads ``"{instructions}\\n\\n s1 s2 ... sm\\n\\n..."``. With
``PromptParts.first_piece_space`` off (a task's ``raw_prompt``) the first context piece, whichever it is, goes
without its joining space, as it follows the text before it (``"...\\nThe grass..."``). With
``PromptParts.needle_line`` the needle piece is ``"\\n<needle>\\n"`` (its region holds both newlines) and the piece
after it opens its line without a space: the original pass-key layout.

Exact length: the haystack is whole units (sentences, documents, key-value pairs), never a cut-off piece of
one; when the next unit does not fit, content-free filler of exactly the missing tokens opens the haystack
(``filler.py``; ``BuiltPrompt.filler_tokens`` says how many), and when the filler style cannot be that short one
more whole unit makes room for a longer filler.

Depth: the needle goes at the boundary between whole units (start and end of the haystack included) whose token
offset is closest to ``depth * unit_tokens``; ``achieved_depth = unit tokens before the needle / unit_tokens``.
Filler is no unit (``spans.unit_boundaries``): depth 0 puts the needle before it, any other boundary after it, so
depth is position among the real units (without filler, ``context_before_tokens / haystack_tokens``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import accumulate, chain
from typing import Any

from evalkit.errors import HaystackError, PlacementError
from evalkit.prompt.requests import check_request, require_room
from evalkit.prompt.multi_needle import place_needles
from evalkit.prompt.spans import (
    PromptFrame,
    achieved_depth,
    closest_boundary,
    tile_regions,
    unit_boundaries,
)
from evalkit.prompt.filler import fill_gap
from evalkit.prompt.tokenization import (
    MID_TEXT_ANCHORS,
    AnchoredEncoder,
    decode_exact,
    encode_plain,
    frame_text,
    ids_sha256,
    tokenizer_adds_bos,
)
from evalkit.types import (
    REGION_CONTEXT_AFTER,
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    BuiltPrompt,
    PromptParts,
    TokenSpan,
)

# arrange(haystack pieces, filler tokens) -> the pieces in another order (haystack_order: shuffled)
Arrange = Callable[[list[tuple[int, ...]], int], list[tuple[int, ...]]]

__all__ = ["PromptBuilder", "build_prompt", "closest_boundary", "gold_continuation_ids"]


class PromptBuilder:
    """Builds token-exact prompts for one tokenizer, caching the encodings trials share.

    Haystack sentences and needles are cached by text (a run reuses the same sentences across many
    trials), frames (template head and tail) by the prompt parts other than the needle. After the
    cache is warm a build is prefix sums over cached token counts plus one concatenation.
    ``max_cached_fragments`` bounds the sentence cache and ``max_cached_frames`` the frame cache
    (questions may carry the trial's value); a cache is emptied when full.
    """

    def __init__(self, tokenizer: Any, *, max_cached_fragments: int = 200_000, max_cached_frames: int = 10_000):
        self._tokenizer = tokenizer
        self._encoder = AnchoredEncoder(tokenizer)
        self._adds_bos = tokenizer_adds_bos(tokenizer)
        # <unk> in a haystack is a text problem, not a placement one: it may appear in the context
        special_ids = set(getattr(tokenizer, "all_special_ids", ()) or ())
        self._special_ids = frozenset(special_ids - {getattr(tokenizer, "unk_token_id", None)})
        self._fragments: dict[str, tuple[int, ...]] = {}
        self._frames: dict[PromptParts, PromptFrame] = {}
        self._max_cached_fragments = max_cached_fragments
        self._max_cached_frames = max_cached_frames

    @property
    def tokenizer(self) -> Any:
        """The tokenizer every prompt of this builder is built in."""
        return self._tokenizer

    @property
    def adds_bos(self) -> bool:
        """Whether the tokenizer starts sequences with BOS (then the template-off prompt does too)."""
        return self._adds_bos

    def fragment_ids(self, text: str) -> tuple[int, ...]:
        """Ids of a context piece as placed: ``" " + text.strip()`` encoded mid-text (cached by text)."""
        key = text.strip()
        token_ids = self._fragments.get(key)
        if token_ids is None:
            if len(self._fragments) >= self._max_cached_fragments:
                self._fragments.clear()
            # split_special_tokens: a literal "<s>" in a haystack is text, never a BOS
            token_ids = tuple(self._encoder.encode_after(" " + key, MID_TEXT_ANCHORS, split_special_tokens=True))
            self._fragments[key] = token_ids
        return token_ids

    def build_prompt(
        self,
        parts: PromptParts,
        sentences: Iterable[str],
        context_length: int,
        depth: float,
        length_tolerance_tokens: int = 0,
        extra_needles: Sequence[tuple[str, float]] = (),
        reorder: Callable[..., tuple[list[tuple[int, ...]], int]] | None = None,
        arrange: Arrange | None = None,
    ) -> BuiltPrompt:
        """Build the prompt of ``context_length`` tokens with the needle at ``depth`` of the haystack.

        ``extra_needles`` are further (text, depth) pairs (multi-needle tasks); each goes at the boundary
        nearest its own depth of the haystack, and its span is in ``extra_needle_spans`` (inside the
        context regions). Depths are fractions of the haystack alone, needles not counted.

        ``sentences`` is consumed only as far as the haystack needs. With ``length_tolerance_tokens``
        0 content-free filler (``parts.filler``) opens the haystack so the prompt has exactly ``context_length``
        tokens, and every sentence is whole; with a tolerance the prompt may end up to that many tokens short,
        on a sentence boundary, instead of adding filler (it is never longer than ``context_length``). Raises
        PlacementError when the fixed parts do not fit or a check fails, HaystackError when
        ``sentences`` runs dry. ``reorder(pieces, needle_index, needle_ids)`` (the reorder_by_relevance arm)
        rearranges the placed haystack pieces and needle: ``(pieces, needle's new index)``. ``arrange(pieces,
        filler_tokens)`` reorders the haystack's pieces once taken, before any needle is placed (``shuffle.py``).
        """
        check_request(context_length, depth, length_tolerance_tokens)
        if reorder is not None and extra_needles:
            raise PlacementError("reorder_by_relevance is not defined for multi-needle tasks; drop that arm")
        if parts.needle_line and extra_needles:
            raise PlacementError("raw_prompt.needle_line is defined for one needle; drop it for multi-needle tasks")
        for _, extra_depth in extra_needles:
            check_request(context_length, extra_depth, length_tolerance_tokens)
        frame, needle_ids = self._frame(parts), self._needle_piece_ids(parts)
        extra_ids = [self._needle_ids(text) for text, _ in extra_needles]
        fixed_tokens = len(frame.head_ids) + len(needle_ids) + len(frame.tail_ids) + sum(map(len, extra_ids))
        require_room(fixed_tokens, context_length)
        pieces, filler_tokens = self._take_haystack(iter(sentences), context_length - fixed_tokens,
                                                    length_tolerance_tokens, context_length, parts.filler)
        if arrange is not None:
            pieces = arrange(pieces, filler_tokens)
        boundaries = unit_boundaries(list(accumulate((len(piece) for piece in pieces), initial=0)), filler_tokens)
        if extra_needles:
            built = place_needles(self, parts, frame, pieces, boundaries, [needle_ids, *extra_ids],
                                  [depth, *(d for _, d in extra_needles)], [t for t, _ in extra_needles],
                                  context_length, length_tolerance_tokens)
            return dataclasses.replace(built, filler_tokens=filler_tokens)
        # place the needle at the boundary between whole units nearest the requested depth (filler is no unit)
        piece_indices, unit_offsets = boundaries
        boundary = closest_boundary(unit_offsets, depth)
        achieved = achieved_depth(unit_offsets[boundary], unit_offsets[-1], depth)
        needle_index = piece_indices[boundary]
        if reorder is not None:  # the reordered haystack: the share of it before the needle
            pieces, needle_index = reorder(pieces, needle_index, needle_ids)
        built = self._assemble(parts, frame, pieces, needle_ids, needle_index, context_length, length_tolerance_tokens)
        if reorder is not None:
            achieved = achieved_depth(built.regions[REGION_CONTEXT_BEFORE].length, sum(map(len, pieces)), depth)
        return dataclasses.replace(built, requested_depth=float(depth), filler_tokens=filler_tokens,
                                   achieved_depth=achieved)

    def _assemble(self, parts: PromptParts, frame: PromptFrame, pieces: list[tuple[int, ...]],
                  needle_ids: tuple[int, ...], needle_index: int, context_length: int,
                  length_tolerance_tokens: int) -> BuiltPrompt:
        """The verified prompt of ``pieces`` with the needle before ``pieces[needle_index]`` (depths filled in by
        the caller)."""
        before_tokens = sum(map(len, pieces[:needle_index]))
        haystack_tokens = sum(map(len, pieces))
        input_ids = tuple(
            chain(frame.head_ids, *pieces[:needle_index], needle_ids, *pieces[needle_index:], frame.tail_ids)
        )
        if needle_index > 0 or not parts.needle_line:  # a needle line opens with its own newline
            input_ids = self.without_first_space(parts, input_ids, len(frame.head_ids),
                                                 pieces[0] if needle_index > 0 else needle_ids)
        if parts.needle_line and needle_index < len(pieces):
            # the piece after the needle line opens the next line: no joining space
            input_ids = self._respell_bare(input_ids, len(frame.head_ids) + before_tokens + len(needle_ids),
                                           pieces[needle_index], f"\n{parts.needle.strip()}\n", "needle_line to false")
        lengths = (len(frame.head_ids), before_tokens, len(needle_ids), haystack_tokens - before_tokens)
        regions = tile_regions(*lengths, len(frame.tail_ids))
        self.verify(input_ids, regions, parts.needle, context_length, length_tolerance_tokens)
        return BuiltPrompt(
            input_ids=input_ids,
            regions=regions,
            needle_text=parts.needle.strip(),
            requested_context_length=context_length,
            length_tolerance_tokens=length_tolerance_tokens,
            requested_depth=math.nan,
            achieved_depth=math.nan,
            prompt_sha256=ids_sha256(input_ids),
        )

    def fixed_tokens(self, parts: PromptParts) -> int:
        """Tokens of everything but the haystack: template, instructions, question and needle."""
        frame = self._frame(parts)
        return len(frame.head_ids) + len(self._needle_piece_ids(parts)) + len(frame.tail_ids)

    def build_without_needle(self, parts: PromptParts, sentences: Iterable[str], context_length: int,
                             length_tolerance_tokens: int = 0, arrange: Arrange | None = None) -> BuiltPrompt:
        """The prompt of ``context_length`` tokens with haystack only (the closed-book control; ``arrange`` as in
        ``build_prompt``). The ``needle`` region is empty at the start of the context; depths are NaN."""
        check_request(context_length, 0.0, length_tolerance_tokens)
        frame = self._frame(parts)
        fixed_tokens = len(frame.head_ids) + len(frame.tail_ids)
        if fixed_tokens > context_length:
            raise PlacementError(f"context_length {context_length} is too small: template, instructions and "
                                 f"question take {fixed_tokens} tokens; use at least {fixed_tokens}")
        pieces, filler_tokens = self._take_haystack(iter(sentences), context_length - fixed_tokens,
                                                    length_tolerance_tokens, context_length, parts.filler)
        if arrange is not None:
            pieces = arrange(pieces, filler_tokens)
        input_ids = tuple(chain(frame.head_ids, *pieces, frame.tail_ids))
        if pieces:
            input_ids = self.without_first_space(parts, input_ids, len(frame.head_ids), pieces[0])
        regions = tile_regions(len(frame.head_ids), 0, 0, len(input_ids) - fixed_tokens, len(frame.tail_ids))
        if not context_length - length_tolerance_tokens <= len(input_ids) <= context_length:
            raise PlacementError(f"built {len(input_ids)} tokens for context_length {context_length}; "
                                 "this is a placement bug, please report it")
        return BuiltPrompt(
            input_ids=input_ids, regions=regions, needle_text="", requested_context_length=context_length,
            length_tolerance_tokens=length_tolerance_tokens, requested_depth=math.nan, achieved_depth=math.nan,
            prompt_sha256=ids_sha256(input_ids), filler_tokens=filler_tokens,
        )

    def without_first_space(
        self, parts: PromptParts, input_ids: tuple[int, ...], context_token_start: int, first_ids: tuple[int, ...]
    ) -> tuple[int, ...]:
        """``input_ids`` with the first context piece (``first_ids`` at ``context_token_start``) placed without its
        joining space when ``parts.first_piece_space`` is off, as it follows the text before it; else unchanged.

        Raises PlacementError when dropping the space changes the piece's token count (the length would move).
        """
        if parts.first_piece_space or not first_ids:
            return input_ids
        head_text = frame_text(self._tokenizer, parts, self._adds_bos).head_text
        return self._respell_bare(input_ids, context_token_start, first_ids, head_text, "first_piece_space to true")

    def _respell_bare(self, input_ids: tuple[int, ...], token_start: int, piece_ids: tuple[int, ...],
                      anchor: str, fix: str) -> tuple[int, ...]:
        """``input_ids`` with ``piece_ids`` at ``token_start`` spelled without its joining space after ``anchor``
        (the text before it); PlacementError naming the raw_prompt ``fix`` when that changes its token count."""
        text = decode_exact(self._tokenizer, piece_ids).strip()
        bare_ids = (self._encoder.encode_after(text, (anchor,), split_special_tokens=True) if anchor
                    else encode_plain(self._tokenizer, text, split_special_tokens=True))
        if len(bare_ids) != len(piece_ids):
            raise PlacementError(
                f"without its joining space the context piece {text[:40]!r} is {len(bare_ids)} tokens, not "
                f"{len(piece_ids)}; set raw_prompt.{fix} for this tokenizer"
            )
        return input_ids[:token_start] + tuple(bare_ids) + input_ids[token_start + len(piece_ids):]

    def gold_continuation_ids(self, parts: PromptParts, answer: str) -> list[int]:
        """Ids of the gold ``answer`` as they follow the prompt (e.g. ``" 12345"`` after "The pass key is").

        After a prompt that ends in whitespace (a generation prompt ending in a newline) the answer
        starts without a space; otherwise with one. Raises PlacementError if the ids do not decode
        back to the answer.
        """
        answer_text = answer.strip()
        if not answer_text:
            raise PlacementError("the gold answer is empty; the task must define a non-empty answer")
        prompt_end_text = self._frame(parts).tail_text
        joiner = "" if prompt_end_text and prompt_end_text[-1].isspace() else " "
        anchors = (prompt_end_text,) if prompt_end_text else MID_TEXT_ANCHORS
        gold_ids = self._encoder.encode_after(joiner + answer_text, anchors, split_special_tokens=True)
        decoded = decode_exact(self._tokenizer, gold_ids)
        if decoded.strip() != answer_text:
            raise PlacementError(
                f"gold answer {answer_text!r} does not survive this tokenizer (its ids decode to {decoded!r}); "
                "use an answer the tokenizer can represent"
            )
        return gold_ids

    def _needle_ids(self, needle: str) -> tuple[int, ...]:
        if not needle.strip():
            raise PlacementError("the needle is empty; the task must insert a non-empty sentence")
        return self.fragment_ids(needle)

    def _needle_piece_ids(self, parts: PromptParts) -> tuple[int, ...]:
        """The needle as placed: ``" " + needle`` mid-text, or ``"\\n" + needle + "\\n"`` with ``needle_line``."""
        token_ids = self._needle_ids(parts.needle)
        if not parts.needle_line:
            return token_ids
        line = f"\n{parts.needle.strip()}\n"  # cache keys are otherwise stripped texts: no collision
        if line not in self._fragments:
            self._fragments[line] = tuple(self._encoder.encode_after(line, MID_TEXT_ANCHORS, split_special_tokens=True))
        return self._fragments[line]

    def _frame(self, parts: PromptParts) -> PromptFrame:
        """Head and tail ids for ``parts`` (cached; the needle does not enter the frame)."""
        key = dataclasses.replace(parts, needle="")  # every field but the needle shapes the frame
        frame = self._frames.get(key)
        if frame is None:
            text = frame_text(self._tokenizer, parts, self._adds_bos)
            bos_ids = [self._tokenizer.bos_token_id] if text.bos_prefix else []
            # the head starts the prompt: a plain encode, special tokens of the template kept
            head_ids = bos_ids + encode_plain(self._tokenizer, text.head_text, split_special_tokens=False)
            tail_ids = self._encoder.encode_after(text.tail_text, MID_TEXT_ANCHORS, split_special_tokens=False)
            frame = PromptFrame(head_ids=tuple(head_ids), tail_ids=tuple(tail_ids), tail_text=text.tail_text)
            if len(self._frames) >= self._max_cached_frames:
                self._frames.clear()
            self._frames[key] = frame
        return frame

    def _take_haystack(
        self, sentences: Iterator[str], budget_tokens: int, tolerance_tokens: int, context_length: int,
        filler_style: str,
    ) -> tuple[list[tuple[int, ...]], int]:
        """Fragments of whole sentences filling ``budget_tokens``, led by content-free filler to fit exactly.

        Returns the pieces and the filler's token count. Within the tolerance the haystack ends short on a
        sentence boundary rather than adding filler.
        """
        pieces: list[tuple[int, ...]] = []
        total_tokens = 0
        while total_tokens < budget_tokens:
            remaining_tokens = budget_tokens - total_tokens
            sentence_ids = self._next_sentence_ids(sentences)
            if sentence_ids is None:
                if remaining_tokens <= tolerance_tokens:
                    break
                raise HaystackError(
                    f"the haystack ran out after {len(pieces)} sentences ({total_tokens} tokens) but "
                    f"context_length {context_length} needs {budget_tokens} haystack tokens; "
                    "use a longer haystack or a smaller context length"
                )
            if len(sentence_ids) <= remaining_tokens:
                pieces.append(sentence_ids)
                total_tokens += len(sentence_ids)
            elif remaining_tokens <= tolerance_tokens:
                break
            else:
                return fill_gap(pieces, remaining_tokens, filler_style, self.fragment_ids)
        return pieces, 0

    def _next_sentence_ids(self, sentences: Iterator[str]) -> tuple[int, ...] | None:
        """Fragment ids of the next non-blank sentence, or None when the stream is exhausted."""
        for sentence in sentences:
            if sentence.strip():
                return self.fragment_ids(sentence)
        return None

    def verify(
        self,
        input_ids: tuple[int, ...],
        regions: dict[str, TokenSpan],
        needle: str,
        context_length: int,
        tolerance_tokens: int,
    ) -> None:
        """Checks every build runs: length, needle span round trip, no special token in the context."""
        prompt_tokens = len(input_ids)
        if not context_length - tolerance_tokens <= prompt_tokens <= context_length:
            raise PlacementError(
                f"built {prompt_tokens} tokens for context_length {context_length} "
                f"(tolerance {tolerance_tokens}); this is a placement bug, please report it"
            )
        span = regions[REGION_NEEDLE]
        decoded = decode_exact(self._tokenizer, input_ids[span.token_start : span.token_end])
        if decoded.strip() != needle.strip():
            raise PlacementError(
                f"needle tokens [{span.token_start}, {span.token_end}) decode to {decoded.strip()!r}, "
                f"not to the needle {needle.strip()!r}; use a needle this tokenizer can represent"
            )
        context_start = regions[REGION_CONTEXT_BEFORE].token_start
        context_end = regions[REGION_CONTEXT_AFTER].token_end
        if not self._special_ids.isdisjoint(input_ids[context_start:context_end]):
            raise PlacementError(
                f"a special token (BOS, EOS, ...) ended up inside the context [{context_start}, {context_end}); "
                "this is a placement bug, please report it"
            )


def build_prompt(tokenizer: Any, parts: PromptParts, sentences: Iterable[str], context_length: int, depth: float,
                 length_tolerance_tokens: int = 0) -> BuiltPrompt:
    """One-off ``PromptBuilder(tokenizer).build_prompt(...)``; keep a PromptBuilder to reuse its caches."""
    return PromptBuilder(tokenizer).build_prompt(parts, sentences, context_length, depth, length_tolerance_tokens)


def gold_continuation_ids(tokenizer: Any, parts: PromptParts, answer: str) -> list[int]:
    """One-off ``PromptBuilder(tokenizer).gold_continuation_ids(parts, answer)``."""
    return PromptBuilder(tokenizer).gold_continuation_ids(parts, answer)

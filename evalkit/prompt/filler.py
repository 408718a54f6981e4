"""Content-free filler of an exact token count: what completes a haystack of whole units to the exact length.

A haystack is made of units (sentences, documents, key-value pairs). When the last unit that would be needed
does not fit, evalkit never keeps a cut-off piece of it (the tail of a document names a founder without its
title; half a key-value pair breaks the JSON): the gap is filled with text that carries no fact instead.

Two styles (``PromptParts.filler``):

- ``"words"``: words such as "and so on as usual", with or without a final full stop, no digits, no nouns;
- ``"json_member"``: a JSON member ``"filler": "and so on ...",`` so a key-value object stays valid JSON.

``filler_ids(fragment_ids, tokens, style)`` returns the pieces (ids, each placed like a context piece) that add
up to exactly ``tokens``, or None when the style cannot make that few tokens (the caller then gives up one
more whole unit and asks for a longer filler). Words are whole where the tokenizer allows; when no whole word is
short enough for the last few tokens, those are the tail of a filler sentence (still content-free).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

from evalkit.errors import PlacementError

FILLER_WORDS = "words"
FILLER_JSON_MEMBER = "json_member"
FILLER_STYLES = (FILLER_WORDS, FILLER_JSON_MEMBER)

# content-free words: no digits, no nouns a task asks about, nothing a question could be answered with
_WORDS: tuple[str, ...] = ("and", "so", "on", "and", "so", "forth", "as", "usual")

FragmentIds = Callable[[str], tuple[int, ...]]


def filler_ids(fragment_ids: FragmentIds, tokens: int, style: str) -> list[tuple[int, ...]] | None:
    """Content-free pieces (placed ids, from ``fragment_ids``) that total exactly ``tokens``; None if impossible."""
    if tokens <= 0:
        return []
    if style == FILLER_JSON_MEMBER:
        text = _longest_fitting(fragment_ids, tokens, lambda words: f'"filler": "{words}",', allow_empty=True)
        return [fragment_ids(text)] if text is not None and len(fragment_ids(text)) == tokens else None
    if style != FILLER_WORDS:
        raise ValueError(f"filler style {style!r} is not one of {', '.join(FILLER_STYLES)}")
    pieces: list[tuple[int, ...]] = []
    left = tokens
    while left > 0:  # the longest phrase that fits, then the rest
        text = _longest_fitting(fragment_ids, left, _sentence)
        if text is None:  # no whole word is this short here: the tail of a filler sentence
            pieces.append(_tail_ids(fragment_ids, left))
            break
        pieces.append(fragment_ids(text))
        left -= len(pieces[-1])
    return pieces


def fill_gap(pieces: list[tuple[int, ...]], gap_tokens: int, style: str,
             fragment_ids: FragmentIds) -> tuple[list[tuple[int, ...]], int]:
    """``pieces`` (whole units) opened by filler of ``gap_tokens``, or of more in place of whole units dropped
    from the end when the style cannot be that short; returns the pieces and the filler's token count."""
    filler_tokens = gap_tokens
    filler = filler_ids(fragment_ids, filler_tokens, style)
    kept = list(pieces)
    while filler is None and kept:  # too short for this filler style: one more whole unit makes room
        filler_tokens += len(kept.pop())
        filler = filler_ids(fragment_ids, filler_tokens, style)
    if filler is None:
        raise PlacementError(f"no {style} filler of {filler_tokens} tokens exists for this tokenizer; "
                             "set length_tolerance_tokens to allow a shorter prompt")
    # the haystack opens with the filler and ends on a whole unit: a needle at depth 1.0 follows a full one
    return [*filler, *kept], filler_tokens


def _tail_ids(fragment_ids: FragmentIds, tokens: int) -> tuple[int, ...]:
    """The last ``tokens`` ids of a filler sentence long enough to have them."""
    count = tokens
    while True:
        ids = fragment_ids(_sentence(" ".join(itertools.islice(itertools.cycle(_WORDS), count))))
        if len(ids) >= tokens:
            return ids[len(ids) - tokens :]
        count += tokens


def _sentence(words: str) -> str:
    return words[:1].upper() + words[1:] + "."


def _longest_fitting(fragment_ids: FragmentIds, tokens: int, shape: Callable[[str], str],
                     allow_empty: bool = False) -> str | None:
    """The longest ``shape(words)`` (or bare words) whose placed ids are at most ``tokens`` long; exact wins."""
    best: tuple[int, str] | None = None
    for count in range(0 if allow_empty else 1, tokens + 1):
        words = " ".join(itertools.islice(itertools.cycle(_WORDS), count))
        shaped = [shape(words)] if allow_empty else [shape(words), words.capitalize()]
        over = True
        for text in shaped:
            length = len(fragment_ids(text))
            if length == tokens:
                return text
            if length < tokens:
                over = False
                if best is None or length > best[0]:
                    best = (length, text)
        if over:
            break
    return None if best is None else best[1]

"""One forward per trial: the prompt and a drafted answer together (the gold answer as a speculative draft).

The draft is the gold answer followed by what the model said after the gold answer last time (for a chat
model typically "." and its end-of-turn token). One forward over ``prompt + draft`` gives at once:

- the gold-answer log-probs, teacher-forced (the draft starts with the gold answer), and
- the greedy answer for as long as the draft agrees with it: greedy token ``j`` is the argmax at input
  position ``L - 1 + j``, which is what one-token decoding would see as long as ``draft[:j]`` equals the
  greedy tokens before it. This is speculative decoding with the gold answer as the draft model, exact
  for greedy decoding (up to float noise between one multi-token and several one-token forwards).

One-token decoding goes on only after the first disagreement, from the cache cropped back to the
agreed tokens. A model that retrieves the fact and ends its turn as last time needs no decode forward.

Cropping needs a cache that can be cut back exactly (``forward.crop_limit``). What is known about a
model's caches and answers is an ``AnswerMemory`` held by its caller (the ``TransformersBackend``
instance, which probes the crop limit before its first trial); with the limit unknown or too short a
trial takes the classic path (prompt forward, gold forward, one-token decoding).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from evalkit.errors import ModelLoadError
from evalkit.models.forward import accepts, cache_kwargs, output_cache

if TYPE_CHECKING:
    import torch

    from evalkit.models.hf import LoadedModel

__all__ = [
    "AnswerMemory", "DraftForward", "answer_draft", "extension_pieces", "fixed_draft", "forward_with_draft",
    "greedy_from_draft", "tail_after_gold",
]  # fmt: skip

# Tokens drafted after the gold answer when the draft has a fixed length (``fixed_draft``): enough for a
# chat model's "." + end of turn, few enough that the extra positions cost little.
TAIL_TOKENS = 8


@dataclass
class AnswerMemory:
    """What is known about one model's caches and answers; its owner decides how long it lives.

    ``crop_limit`` None: unknown (the next trial takes the classic path and sets it from its cache).
    ``fixed_length``: drafts are padded to ``fixed_draft``'s length, so a trial's forward shapes do not
    depend on what the model answered before (the learned tail changes only the draft's content).
    """

    crop_limit: float | None = None  # longest cache (tokens) that can still be cut back; None: not seen yet
    tail: tuple[int, ...] = ()  # the tokens the model generated after the gold answer, last time it did
    fixed_length: bool = False
def answer_draft(gold_ids: Sequence[int], tail: Sequence[int], max_new_tokens: int) -> list[int]:
    """The tokens fed after the prompt: ``gold + tail``, long enough to score every gold token
    (``len(gold) - 1``: the last gold token predicts nothing scored) and no longer than greedy needs."""
    wanted = max(len(gold_ids) - 1, max_new_tokens - 1)
    return [int(t) for t in (*gold_ids, *tail)][:wanted]


def fixed_draft(gold_ids: Sequence[int], tail: Sequence[int], max_new_tokens: int, filler: int) -> list[int]:
    """``answer_draft`` padded with ``filler`` to a length set by the gold length and ``max_new_tokens`` only.

    Same forward shapes for a trial whatever the model answered before (a resumed run drafts like an
    uninterrupted one); tokens after the gold answer only decide how far the greedy answer can be read
    off the forward (a wrong filler is a disagreement like any other).
    """
    length = max(len(gold_ids) - 1, min(max_new_tokens - 1, len(gold_ids) + TAIL_TOKENS))
    draft = answer_draft(gold_ids, tail, max_new_tokens)[:length]
    return draft + [int(filler)] * (length - len(draft))


def tail_after_gold(generated: Sequence[int], gold_ids: Sequence[int]) -> tuple[int, ...] | None:
    """What the model generated after the gold answer, or None if its answer does not start with it."""
    gold = tuple(int(t) for t in gold_ids)
    return tuple(generated[len(gold) :]) if tuple(generated[: len(gold)]) == gold else None


@dataclass
class DraftForward:
    """The result of the forward over ``prompt + draft``."""

    logits: torch.Tensor  # [D + 1, V] float32: next-token logits at the last prompt token and each draft token
    cache: Any  # holds prompt + draft


# Pieces fed on a cache get an explicit [q, past + q] mask under sdpa, whose kernels compute the whole
# rectangle: the q * q / 2 masked half is wasted. Feeding a long extension in pieces no longer than the
# cache before them (and not shorter than this) bounds that waste to a third of the piece's attention.
MIN_PIECE_TOKENS = 512


def extension_pieces(start: int, end: int, split_before: int, min_piece: int | None = None) -> list[tuple[int, int]]:
    """Leading pieces ``[a, b)`` of the tokens ``[start, end)`` to feed as forwards of their own.

    Only after a cached prefix (``start > 0``: a fresh prompt is one causal forward, no mask), each
    at most as long as the cache before it (at least ``min_piece``), all before ``split_before`` (the
    first token the last forward must see as a query: capture rows, the last prompt token).
    """
    min_piece = MIN_PIECE_TOKENS if min_piece is None else min_piece
    pieces: list[tuple[int, int]] = []
    position = start
    while position > 0 and end - position > max(position, min_piece):
        size = min(max(position, min_piece), split_before - position)
        if size <= 0:
            break
        pieces.append((position, position + size))
        position += size
    return pieces


def forward_with_draft(
    loaded: LoadedModel,
    input_ids: Sequence[int],
    draft: Sequence[int],
    past_cache: Any = None,
    context: AbstractContextManager[Any] | None = None,
) -> DraftForward:
    """One forward over ``input_ids + draft`` (only the part after ``past_cache``'s tokens is fed).

    ``context`` is entered around exactly the forward that feeds the last prompt token; one with
    ``set_query_start(start)`` (an attention recording) is told where that forward's first query sits.
    A long extension of a cached prefix first feeds leading pieces of its own (``extension_pieces``).
    """
    import torch

    model = loaded.model
    start = 0 if past_cache is None else int(past_cache.get_seq_length())
    if not 0 <= start < len(input_ids):
        raise ValueError(f"forward_with_draft: the past cache holds {start} tokens, the prompt has {len(input_ids)}")
    tokens = [*input_ids, *draft]
    keep = len(draft) + 1  # logits of the last prompt position and of every draft position only
    last_query = min(len(input_ids) - 1, getattr(context, "first_row", len(input_ids) - 1))
    logits_arg = {"logits_to_keep": keep} if accepts(model, "logits_to_keep") else {}
    cache = past_cache
    for piece_start, piece_end in extension_pieces(start, len(tokens), last_query):
        piece = torch.tensor([tokens[piece_start:piece_end]], dtype=torch.long, device=loaded.device)
        piece_logits = {"logits_to_keep": 1} if logits_arg else {}  # a piece's logits are not needed
        cache = output_cache(model(input_ids=piece, use_cache=True, **piece_logits, **cache_kwargs(model, cache)))
        start = piece_end
    fed = torch.tensor([tokens[start:]], dtype=torch.long, device=loaded.device)  # [1, T]
    extra = dict(logits_arg)
    if cache is not None:
        extra.update(cache_kwargs(model, cache))
    if context is not None and hasattr(context, "set_query_start"):
        context.set_query_start(start)
    with context if context is not None else nullcontext():
        out = model(input_ids=fed, use_cache=True, **extra)
    cache = output_cache(out)
    if cache is None:
        raise ModelLoadError(f"model {loaded.name!r} returned no KV cache with use_cache=True; evalkit needs one")
    return DraftForward(logits=out.logits[0, -keep:].float(), cache=cache)


def greedy_from_draft(
    logits: torch.Tensor, draft: Sequence[int], stop_token_ids: Sequence[int], max_new_tokens: int
) -> tuple[list[int], int, bool]:
    """Greedy tokens read off a draft forward: ``(tokens, accepted, finished)``.

    ``accepted``: leading draft tokens equal to the greedy ones (the cache is valid up to ``L + accepted``).
    ``finished``: a stop token or ``max_new_tokens`` was reached; otherwise ``tokens[-1]`` is the next
    token to feed, after cropping the cache to ``L + accepted``.
    """
    stops = set(stop_token_ids)
    chosen = logits.argmax(-1).tolist()  # [D + 1]; first index on ties, as torch.argmax in decoding
    tokens: list[int] = []
    for position, token in enumerate(chosen):
        tokens.append(int(token))
        if token in stops or len(tokens) == max_new_tokens:
            return tokens, position, True
        if position == len(draft) or int(draft[position]) != token:
            return tokens, position, False
    raise AssertionError("unreachable: the last position always returns")

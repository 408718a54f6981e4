"""The ``haystack_order: shuffled`` layout axis: a trial's haystack sentences in an order drawn from its seed.

The builder takes the haystack's whole units from the source in its own order (``coherent``), exactly as a
coherent trial of the same seed would, and only then does this module permute them: a shuffled trial holds the
same sentences (the same multiset of token pieces) as its coherent pair, at the same length, with the needle at
the same requested depth. The content-free filler that makes the exact length stays where it opens the haystack
(``filler.fill_gap``), so depth is still position among the whole units. The permutation depends on the seed
alone: the same trial seed gives the same order in every run and process.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable

HAYSTACK_ORDERS = ("coherent", "shuffled")

Pieces = list[tuple[int, ...]]


def shuffle_units(pieces: Pieces, filler_tokens: int, seed: int) -> Pieces:
    """``pieces`` with the whole units after the opening filler (``filler_tokens`` in all) permuted by ``seed``."""
    filler_count, tokens = 0, 0
    while tokens < filler_tokens:  # the filler pieces open the haystack and total exactly filler_tokens
        tokens += len(pieces[filler_count])
        filler_count += 1
    units = pieces[filler_count:]
    # a string seed is hashed with sha512 by `random`: stable across processes and PYTHONHASHSEED
    random.Random(f"evalkit.shuffle:{seed}").shuffle(units)
    return [*pieces[:filler_count], *units]


def haystack_arranger(order: str, seed: int) -> Callable[[Pieces, int], Pieces] | None:
    """What the builder calls on the haystack's pieces for ``order`` (None: the source's own order)."""
    if order not in HAYSTACK_ORDERS:
        raise ValueError(f"haystack_order {order!r} is not one of {', '.join(HAYSTACK_ORDERS)}")
    return functools.partial(shuffle_units, seed=seed) if order == "shuffled" else None

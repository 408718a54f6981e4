"""What a placement request must satisfy before any prompt is built (a leaf: the builders share it)."""

from __future__ import annotations

import math
import numbers

from evalkit.errors import PlacementError


def check_request(context_length: int, depth: float, tolerance_tokens: int) -> None:
    """PlacementError for a context length, depth or tolerance no prompt can satisfy."""
    if isinstance(context_length, bool) or not isinstance(context_length, numbers.Integral) or context_length < 1:
        raise PlacementError(f"context_length must be a positive whole number of tokens, got {context_length!r}")
    if not (isinstance(depth, numbers.Real) and math.isfinite(depth) and 0.0 <= depth <= 1.0):
        raise PlacementError(f"depth must be a fraction in [0, 1], got {depth!r}")
    if isinstance(tolerance_tokens, bool) or not isinstance(tolerance_tokens, numbers.Integral) or tolerance_tokens < 0:
        raise PlacementError(f"length_tolerance_tokens must be a whole number >= 0, got {tolerance_tokens!r}")


def require_room(fixed_tokens: int, context_length: int) -> None:
    """Refuse a length that the fixed parts (template, instructions, needles, question) already fill."""
    if fixed_tokens > context_length:
        raise PlacementError(
            f"context_length {context_length} is too small: template, instructions, needle and question "
            f"take {fixed_tokens} tokens; use at least {fixed_tokens} + room for the haystack"
        )

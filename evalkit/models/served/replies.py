"""Every value read off an engine's reply, checked before evalkit uses it: types, ranges and lengths.

A reply is input from another program: a token id of -7 or 10**9, a log-prob of ``"NaN"`` or +3, a count
of -1 or ``true``, a text that is a list. Each reader here returns the value typed, or raises ``TrialFailed``
with a reason naming the engine, the route, the field and the bad value: the runner records that trial as
skipped (``skip_reason``) and the run goes on. A field that is missing altogether is ``reply_field``'s
``ServerError`` instead (engines.py): that is the wrong engine, and every trial would fail the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from evalkit.errors import TrialFailed

__all__ = ["LOGPROB_SLACK", "ReplyReader"]

LOGPROB_SLACK = 1e-4  # a log-prob is <= 0; an engine's float32 softmax may round a certain token a hair above
MAX_SHOWN = 80  # characters of a bad value quoted in a skip reason


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON true is not a count


@dataclass(frozen=True)
class ReplyReader:
    """Reads one engine's replies: ``engine`` names it in reasons; ``vocab_size`` bounds token ids (None: unknown)."""

    engine: str
    vocab_size: int | None = None

    def bad(self, route: str, field: str, value: Any, what: str) -> TrialFailed:
        """The ``TrialFailed`` for ``field`` of ``route``'s reply holding ``value``, which is not ``what``."""
        return TrialFailed(f"{self.engine} {route}: the reply's {field} is {_shown(value)}, not {what}")

    def token_id(self, route: str, field: str, value: Any) -> int:
        """A token id of the local tokenizer: an int in ``[0, vocab_size)``."""
        limit = self.vocab_size
        if not _is_int(value) or value < 0 or (limit is not None and value >= limit):
            what = "a token id (an int >= 0)" if limit is None else f"a token id of the tokenizer (0 to {limit - 1})"
            raise self.bad(route, field, value, what)
        return value

    def token_ids(self, route: str, field: str, value: Any, max_len: int | None = None) -> tuple[int, ...]:
        """A list of token ids, at most ``max_len`` of them."""
        if not isinstance(value, list):
            raise self.bad(route, field, value, "a list of token ids")
        if max_len is not None and len(value) > max_len:
            raise self.bad(route, f"{field} length", len(value), f"at most the {max_len} tokens asked for")
        return tuple(self.token_id(route, f"{field}[{i}]", v) for i, v in enumerate(value))

    def count(self, route: str, field: str, value: Any) -> int | None:
        """A token count: a non-negative int, or None where the engine left it out."""
        if value is None:
            return None
        if not _is_int(value) or value < 0:
            raise self.bad(route, field, value, "a count (an int >= 0)")
        return value

    def text(self, route: str, field: str, value: Any) -> str:
        """A string (an answer's text)."""
        if not isinstance(value, str):
            raise self.bad(route, field, value, "a string")
        return value

    def label(self, route: str, field: str, value: Any) -> str:
        """A short string such as a stop reason ("" where the engine left it out)."""
        return "" if value is None else self.text(route, field, value)

    def logprob(self, route: str, field: str, value: Any) -> float:
        """A log-probability: a finite number <= 0."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                or value > LOGPROB_SLACK:  # fmt: skip
            raise self.bad(route, field, value, "a log-probability (a finite number <= 0)")
        return float(value)

    def items(self, route: str, field: str, value: Any, kind: type = dict, empty: bool = True) -> list[Any]:
        """A list whose items are all ``kind`` (dicts by default); ``empty=False``: at least one."""
        if not isinstance(value, list) or not all(isinstance(v, kind) for v in value) or (not empty and not value):
            raise self.bad(route, field, value, f"a {'' if empty else 'non-empty '}list of {kind.__name__}s")
        return value

    def mapping(self, route: str, field: str, value: Any) -> dict[str, Any]:
        """An object ({} where the engine left it out or sent null)."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.bad(route, field, value, "an object")
        return value

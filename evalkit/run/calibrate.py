"""Calibration forwards for ``evalkit plan``: measure a model's prefill and decode throughput in a few requests.

Each model entry is loaded with its own backend (a served entry talks to its engine) and given short greedy
requests through ``Backend.run``, the path a run takes:

    prefill  a prompt of ``prompt_tokens`` tokens with a one-token answer: tokens / seconds
    decode   the same prompt length with ``decode_tokens`` more answer tokens: the extra tokens / the extra seconds

Every request starts with other tokens (the filler ids rotated), so neither the engine's prefix cache nor
evalkit's prefix reuse serves it from an earlier one. The fastest of ``rounds`` is kept (the first pays warm-up).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from evalkit.config.schema import ModelConfig
from evalkit.models.backends import backend_class
from evalkit.models.base import Backend, TrialRequest

__all__ = ["Throughput", "measure_throughput"]

FILLER = ("The river ran past the old mill and the fields beyond it, where the farmers worked until the light "
          "faded over the hills and the evening bells rang out across the valley. ")  # fmt: skip


@dataclass(frozen=True)
class Throughput:
    """Measured tokens per second of one model entry."""

    prefill_tokens_per_s: float
    decode_tokens_per_s: float
    prompt_tokens: int  # the calibration prompt's length


def _prompt(tokenizer, tokens: int, shift: int) -> tuple[int, ...]:
    ids = list(tokenizer.encode(FILLER * (tokens // 20 + 2), add_special_tokens=False))[:tokens]
    shift %= len(ids)
    return tuple(ids[shift:] + ids[:shift])


def _timed(backend: Backend, request: TrialRequest) -> tuple[float, int]:
    """Seconds and generated tokens of one request."""
    started = time.perf_counter()
    output = backend.run([request])[0]
    return time.perf_counter() - started, len(output.generated_token_ids)


def _measure(backend: Backend, prompt_tokens: int, decode_tokens: int, rounds: int) -> Throughput:
    tokenizer = backend.info.tokenizer
    prefill, decode = [], []
    for r in range(rounds):
        ids = _prompt(tokenizer, prompt_tokens, 2 * r + 1)
        gold = ids[:1]
        short_s, _ = _timed(backend, TrialRequest(ids, gold, 1))
        long_s, generated = _timed(backend, TrialRequest(_prompt(tokenizer, prompt_tokens, 2 * r + 2), gold,
                                                         1 + decode_tokens))  # fmt: skip
        prefill.append(prompt_tokens / short_s)
        extra_tokens, extra_s = generated - 1, long_s - short_s
        if extra_tokens > 0 and extra_s > 0:  # an answer that stopped at once tells nothing about decoding
            decode.append(extra_tokens / extra_s)
    decode_tps = max(decode) if decode else max(prefill) / prompt_tokens  # fallback: one token per forward
    return Throughput(max(prefill), decode_tps, prompt_tokens)


def measure_throughput(cfg: ModelConfig, prompt_tokens: int = 256, decode_tokens: int = 16,
                       rounds: int = 2) -> Throughput:
    """Load ``cfg``'s backend, time a few short requests (see the module doc), close it."""
    backend = backend_class(cfg.backend).load(cfg)
    try:
        return _measure(backend, prompt_tokens, decode_tokens, rounds)
    finally:
        backend.close()

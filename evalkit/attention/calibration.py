"""The ``calibrate_attention`` arm inside the attention kernel (Hsieh et al. 2024, Found in the Middle).

Found in the Middle models a document's attention as relevance plus a positional bias, and measures the bias
with content-free documents: what a document at position ``k`` gets when no document has content. Dividing
the attention of document ``k``'s keys by that bias (then renormalising the row) removes it. evalkit does
that as an additive term on the logits, which is the same thing before the softmax::

    logit'[row, key] = logit[row, key] - strength * log(bias[layer, head, k])   for every key of document k

``bias`` is each document's per-token mass in the probe prompt, normalised to mean 1 over the documents (so
keys outside the documents keep their share on average), ``strength`` 0 is the model as it is and 1 divides
the bias out. Only the answer rows are calibrated (the last prompt token, the draft and decode tokens: every
query at an absolute position ``>= answer_start``) and only in the chosen layers; every other row, and so the
prompt's keys and values, is the kernel's own. For a calibrated layer the answer rows of the kernel's output
are recomputed in float32 (logits, mask, softmax, values) and replace the kernel's; a capture recording in the
same forward sees the calibrated row.

Public API::

    calibration = AttentionCalibration(spans, log_bias, answer_start)    # log_bias [layers, heads, documents]
    with capture.calibrate(calibration):                                 # AttentionCapture (capture.py)
        model(...)                                                       # any number of forwards
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

import numpy as np
import torch

from evalkit.attention.capture_math import ALL_MASKED, MaskBias, mask_bias
from evalkit.errors import CaptureError

__all__ = [
    "AttentionCalibration", "active_calibration", "calibrated_mask_bias", "forward_total_tokens", "log_bias_from_probe",
]

_ACTIVE: ContextVar[AttentionCalibration | None] = ContextVar("evalkit_attention_calibration", default=None)
# a document the probe row gave (almost) nothing is boosted at most this much: the bias is floored there
_DENSITY_FLOOR = 1e-3


def log_bias_from_probe(mass: np.ndarray, tokens: Sequence[int], strength: float,
                        layers: Sequence[int] | None) -> np.ndarray:
    """``strength * log(bias)`` [layers, heads, documents] from a probe's document masses.

    ``mass`` [layers, heads, documents]: each content-free document's attention mass at the probe's answer row;
    ``tokens``: each probe document's length. Per-token density, normalised to mean 1 over the documents the
    head sees (mass > 0); a document a head does not see (beyond a sliding window) keeps 0, as do the layers
    not in ``layers``: the calibration only redistributes attention among the documents a head reads.
    """
    density = np.nan_to_num(mass.astype(np.float64), nan=0.0) / np.maximum(np.asarray(tokens, dtype=np.float64), 1)
    seen = density > 0
    count = seen.sum(axis=-1, keepdims=True)
    mean = np.where(count > 0, density.sum(axis=-1, keepdims=True) / np.maximum(count, 1), 1.0)
    normalised = np.where(seen, density / mean, 1.0)
    out = strength * np.log(np.maximum(normalised, _DENSITY_FLOOR))
    if layers is not None:
        keep = np.zeros(out.shape[0], dtype=bool)
        keep[list(layers)] = True
        out[~keep] = 0.0
    return out.astype(np.float32)


class AttentionCalibration:
    """What one calibrated request subtracts: ``log_bias [layers, heads, documents]`` on each document's keys
    (``spans``, absolute ``[start, end)``) at every query at or after ``answer_start``."""

    def __init__(self, spans: Sequence[Sequence[int]], log_bias: np.ndarray, answer_start: int) -> None:
        if log_bias.ndim != 3 or log_bias.shape[-1] != len(spans):
            raise CaptureError(f"calibration: log_bias {log_bias.shape} must be [layers, heads, {len(spans)}]")
        self.spans = [(int(a), int(b)) for a, b in spans]
        self.log_bias = torch.as_tensor(log_bias, dtype=torch.float32)
        self.answer_start = int(answer_start)
        self.layers = frozenset(int(i) for i in np.flatnonzero(np.abs(log_bias).sum(axis=(1, 2)) > 0))
        self.total_tokens: int | None = None  # past + new tokens of the running forward (set by capture's hook)
        self.module_ids: frozenset[int] = frozenset()  # the text model's attention modules (``capture.calibrate``)

    def __enter__(self) -> AttentionCalibration:
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)

    def key_bias(self, layer: int, k_len: int, offset: int, device: torch.device) -> torch.Tensor:
        """``-log_bias`` of each key, ``[heads, k_len]`` (keys ``offset + j`` in absolute positions; 0 outside documents)."""
        row = self.log_bias[layer].to(device)  # [heads, documents]
        out = torch.zeros(row.shape[0], k_len, dtype=torch.float32, device=device)
        for index, (start, end) in enumerate(self.spans):
            lo, hi = max(start - offset, 0), min(end - offset, k_len)
            if hi > lo:
                out[:, lo:hi] = -row[:, index : index + 1]
        return out

    def answer_rows(self, q_len: int) -> range:
        """The query indices of this forward at or after ``answer_start`` (empty before the answer)."""
        first_absolute = (self.total_tokens if self.total_tokens is not None else q_len) - q_len
        return range(max(self.answer_start - first_absolute, 0), q_len)

    def calibrate_output(self, module: Any, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: Any,
                         kind: str, kwargs: dict, output: Any) -> Any:
        """The kernel's ``(attn_output [B, Lq, H, D], weights)`` with this layer's answer rows recomputed calibrated."""
        layer = getattr(module, "layer_idx", None)
        rows = self.answer_rows(query.shape[2])
        if layer not in self.layers or len(rows) == 0:
            return output
        if kwargs.get("s_aux") is not None:
            raise CaptureError("calibrate_attention: attention sinks (s_aux) are not modelled; drop this arm")
        attn_output, weights = output if isinstance(output, tuple) else (output, None)
        with torch.no_grad():
            calibrated = self._rows(module, layer, query, key, value, mask, kind, kwargs, rows)  # [B, H, Q, D]
        attn_output = attn_output.clone()
        attn_output[:, rows.start : rows.stop] = calibrated.transpose(1, 2).to(attn_output.dtype)
        return (attn_output, weights) if isinstance(output, tuple) else attn_output

    def capture_bias(self, layer: int, row_positions: torch.Tensor, heads: int, group: int, k_len: int,
                     offset: int) -> torch.Tensor | None:
        """The additive term a capture recording adds for its rows ``[B, Q]`` (absolute positions), in capture's
        ``[B, Hkv, G*Q, Lk]`` layout; None for a layer or rows left as they are."""
        if layer not in self.layers:
            return None
        answering = (row_positions >= self.answer_start).float()  # [B, Q]
        if not bool(answering.any()):
            return None
        per_key = self.key_bias(layer, k_len, offset, row_positions.device)  # [H, Lk]
        batch, n_rows = row_positions.shape
        grouped = per_key.reshape(heads // group, group, 1, k_len) * answering.reshape(batch, 1, 1, n_rows, 1)
        return grouped.reshape(batch, heads // group, group * n_rows, k_len)

    def _rows(self, module: Any, layer: int, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
              mask: Any, kind: str, kwargs: dict, rows: range) -> torch.Tensor:
        batch, heads, q_len, dim = query.shape
        kv_heads, k_len = key.shape[1], key.shape[2]
        group, n_rows = heads // kv_heads, len(rows)
        offset = max((self.total_tokens or k_len) - k_len, 0)  # keys a sliding-window cache dropped
        index = torch.arange(rows.start, rows.stop, device=query.device).expand(batch, n_rows)
        is_causal = kwargs.get("is_causal")
        bias = mask_bias(kind, mask, index, q_len, k_len, group, sliding_window=kwargs.get("sliding_window"),
                         is_causal=getattr(module, "is_causal", True) if is_causal is None else bool(is_causal),
                         row_span=(rows.start, rows.stop - 1))(0, k_len)
        scaling = kwargs.get("scaling") or dim**-0.5
        q = query[:, :, rows.start : rows.stop].float().reshape(batch, kv_heads, group * n_rows, dim)
        logits = q @ key.float().transpose(-1, -2) * scaling  # [B, Hkv, G*Q, Lk]
        softcap = kwargs.get("softcap")
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        if isinstance(bias, torch.Tensor):
            logits = logits + bias
        elif isinstance(bias, str) and bias == ALL_MASKED:
            raise CaptureError("calibrate_attention: an answer row sees no key")
        per_key = self.key_bias(layer, k_len, offset, query.device).reshape(kv_heads, group, 1, k_len)
        logits = logits + per_key.expand(kv_heads, group, n_rows, k_len).reshape(kv_heads, group * n_rows, k_len)
        probs = torch.softmax(logits, dim=-1)
        out = probs @ value.float()  # [B, Hkv, G*Q, Dv]
        return out.reshape(batch, heads, n_rows, value.shape[-1])


def active_calibration() -> AttentionCalibration | None:
    """The calibration of the running request, if any."""
    return _ACTIVE.get()


def forward_total_tokens(args: tuple, kwargs: dict) -> int | None:
    """Tokens in the cache once the base model's forward called with ``args, kwargs`` has run (past + new)."""
    tokens = kwargs.get("input_ids", args[0] if args else None)
    if tokens is None:
        tokens = kwargs.get("inputs_embeds")
    cache = kwargs.get("cache", kwargs.get("past_key_values"))
    past = int(cache.get_seq_length()) if hasattr(cache, "get_seq_length") else 0
    return None if tokens is None else past + tokens.shape[1]


def calibrated_mask_bias(layer: int, rows: torch.Tensor, q_len: int, heads: int, group: int, k_len: int, offset: int,
                total_tokens: int | None, bias: MaskBias) -> MaskBias:
    """``bias`` plus the active calibration's term for the recorded rows (the row as the model computed it)."""
    calibration = active_calibration()
    if calibration is None:
        return bias
    first = (total_tokens if total_tokens is not None else q_len) - q_len  # absolute position of query 0
    extra = calibration.capture_bias(layer, rows + first, heads, group, k_len, offset)
    if extra is None:
        return bias

    def combined(start: int, end: int):
        base = bias(start, end)
        if isinstance(base, str) and base == ALL_MASKED:
            return base
        return extra[..., start:end] if base is None else base + extra[..., start:end]

    return combined

"""Attention capture: how much attention mass chosen query rows put on prompt regions, per layer and head.

The model keeps its fast kernel for the output; only inside a ``record`` block are a few query rows recomputed
(float32, chunked over keys) and reduced over region spans. Never uses ``output_attentions``.

Public API::

    capture = AttentionCapture.attach(model, inner=None, *, chunk_tokens=4096)
    with capture.record(rows, spans) as rec:
        model(input_ids, attention_mask=..., past_key_values=cache)   # exactly one forward per block
    rec.mass       # [B, layers, heads, Q, R] float32
    rec.remainder  # [B, layers, heads, Q] = 1 - rec.mass.sum(-1)
    rec.argmax     # [B, layers, heads, Q] int64: absolute key position of each row's strongest weight
    rec.token_mass # with record(..., tokens=True): [B, layers, Q, keys] float32, mean over heads per key
    capture.detach()

``attach`` registers ``capture_<inner>`` with ``transformers.AttentionInterface`` (a wrapper that calls the inner
kernel for the output) and the inner kernel's mask builder with ``AttentionMaskInterface`` (without it the mask is
silently dropped), then switches the model to it. ``inner``: ``"sdpa"``, ``"eager"`` (the model module's own
``eager_attention_forward``: needed for softcap (Gemma 2) and sinks (gpt-oss)) or ``"flash_attention_2"``/``_3``.
``None`` picks ``"sdpa"``, or ``"eager"`` where the family needs it. A family whose attention does not go through
the interface (Falcon, Bloom, MPT, GPT-Neo, XGLM, Mamba, ... in transformers 5.x) raises ``CaptureError`` before
any forward. ``detach`` restores the previous implementation.

Conventions of ``record(rows, spans)``:
- ``rows`` LongTensor ``[B, Q]``: indices into the query positions of THIS forward call. Prefill: e.g.
  ``[[L - 1]]`` for the last prompt token (left padding keeps the last position at ``L - 1`` for every item);
  a decode step feeds one token, so ``rows = [[0]] * B``.
- ``spans`` LongTensor ``[B, R, 2]``: half-open ``[start, end)`` KEY positions, absolute in the key/cache sequence
  (the tokens of all forwards so far, left padding included): a region at prompt tokens ``[s, e)`` of an item
  left-padded by ``p`` is ``[p + s, p + e)``, at prefill and at every later decode step alike.
- ``mass[b, l, h, q, r]``: attention probability of query row ``rows[b, q]`` in layer ``l``, head ``h``, on keys
  in span ``r``. Spans may overlap (each is summed on its own); ``remainder`` is only meaningful when they do not.
  With sinks (gpt-oss) the sink's share is part of ``remainder``. Layers that did not run stay NaN; a row
  whose keys are all masked gives NaN. Results stay on the model's device.
- ``argmax[b, l, h, q]``: the absolute key position (same coordinates as ``spans``) with the largest attention
  weight of that row, the first on ties; -1 for layers that did not run (needed for Wu et al.'s retrieval score).
- Sliding-window layers whose cache has dropped its oldest keys (``DynamicCache`` and ``StaticCache`` alike) are
  handled: the layer's keys are the last ``Lk`` of the ``past + new`` tokens, where ``past`` is read (by a forward
  pre-hook on ``model.base_model``) from the ``cache``/``past_key_values`` argument. Call the model, or its base
  model, not the decoder layers directly.
- Cost: outside a record block the wrapper adds one ContextVar lookup per layer call. Inside, per layer: two
  float32 passes over the keys for ``H * Q`` rows in chunks of ``chunk_tokens`` (about ``4 * H * Q * Lk * D``
  flops), memory O(Q * Lk). Each recording is one forward: the pre-hook raises on a second one.
"""

from __future__ import annotations

import sys
from contextvars import ContextVar
from typing import Any

import torch

from evalkit.errors import CaptureError
from evalkit.models.base import CalibrationRequest
from evalkit.attention.calibration import (
    AttentionCalibration,
    active_calibration,
    calibrated_mask_bias,
    forward_total_tokens,
)
from evalkit.attention.capture_math import KERNEL_EAGER, KERNEL_FLASH, kernel_kind, mask_bias, region_mass_argmax_tokens

__all__ = ["AttentionCapture", "AttentionRecording"]

NAME_PREFIX = "capture_"
_HINT = "set attention.capture: false in the config"
# The recording that the attention wrapper feeds, if any (one per thread/context, like torch.no_grad).
_ACTIVE: ContextVar[AttentionRecording | None] = ContextVar("evalkit_attention_recording", default=None)


class AttentionCapture:
    """A model switched to a ``capture_<inner>`` attention implementation. Build it with ``attach``."""

    def __init__(self, model: Any, inner: str, previous: str | None, chunk_tokens: int) -> None:
        self.model = model
        self.inner = inner
        self.name = NAME_PREFIX + inner
        self.chunk_tokens = chunk_tokens
        self._previous = previous
        text_config = model.config.get_text_config()
        self.num_layers: int = text_config.num_hidden_layers
        # attention modules of the text model: they hold its config (vision towers and the like do not)
        self._module_ids = frozenset(id(m) for m in model.modules() if getattr(m, "config", None) is text_config)
        self._hook = model.base_model.register_forward_pre_hook(self._before_forward, with_kwargs=True)

    @classmethod
    def attach(cls, model: Any, inner: str | None = None, *, chunk_tokens: int = 4096) -> AttentionCapture:
        """Switch ``model`` to ``capture_<inner>``; raises CaptureError if its family cannot be captured."""
        from transformers import AttentionInterface, AttentionMaskInterface
        from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

        if chunk_tokens < 1:
            raise CaptureError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        previous = model.config._attn_implementation
        if isinstance(previous, str) and previous.startswith(NAME_PREFIX):
            raise CaptureError(f"model already uses '{previous}': detach the existing capture first")
        check_capturable(model)
        inner = _choose_inner(model, inner)
        name = NAME_PREFIX + inner
        mask_builder = ALL_MASK_ATTENTION_FUNCTIONS._global_mapping.get(inner)
        if mask_builder is None:
            raise CaptureError(f"no attention-mask builder is registered for '{inner}' in this transformers")
        AttentionInterface.register(name, _make_wrapper(inner))
        AttentionMaskInterface.register(name, mask_builder)
        _switch(model, inner, name)
        return cls(model, inner, previous, chunk_tokens)

    def record(self, rows: torch.Tensor, spans: torch.Tensor, *, tokens: bool = False) -> AttentionRecording:
        """A one-forward request: ``rows [B, Q]`` query indices, ``spans [B, R, 2]`` absolute key intervals;
        ``tokens`` also keeps each row's mass on every key, averaged over heads (``token_mass``)."""
        return AttentionRecording(self, _as_index(rows, 2, "rows"), _as_index(spans, 3, "spans"), tokens=tokens)

    def calibrate(self, request: CalibrationRequest) -> AttentionCalibration:
        """``with capture.calibrate(request): ...`` calibrates every forward inside (``attention/calibration.py``);
        recordings in the same block see the calibrated rows."""
        if request.log_bias.shape[0] != self.num_layers:
            raise CaptureError(f"calibration has {request.log_bias.shape[0]} layers, the model {self.num_layers}")
        calibration = AttentionCalibration(request.spans, request.log_bias, request.answer_start)
        calibration.module_ids = self._module_ids
        return calibration

    def detach(self) -> None:
        """Remove the hook and restore the attention implementation the model had before ``attach``."""
        self._hook.remove()
        if self._previous is not None and self.model.config._attn_implementation == self.name:
            self.model.set_attn_implementation(self._previous)

    def _before_forward(self, module: Any, args: tuple, kwargs: dict) -> None:
        """Pre-hook of the base model: tells the active recording how many tokens the cache will hold."""
        recording = _ACTIVE.get()
        if recording is not None and recording.capture is self:
            recording._start_forward(args, kwargs)
        calibration = active_calibration()
        if calibration is not None and calibration.module_ids is self._module_ids:
            calibration.total_tokens = forward_total_tokens(args, kwargs)


class AttentionRecording:
    """The context manager returned by ``AttentionCapture.record``; holds ``mass`` and ``remainder`` after it."""

    def __init__(self, capture: AttentionCapture, rows: torch.Tensor, spans: torch.Tensor, *,
                 tokens: bool = False) -> None:
        if rows.shape[0] != spans.shape[0] or spans.shape[-1] != 2:
            raise CaptureError(f"rows [B, Q] and spans [B, R, 2] disagree: {tuple(rows.shape)}, {tuple(spans.shape)}")
        if rows.numel() == 0 or spans.shape[1] == 0:
            raise CaptureError("rows and spans must name at least one row and one span")
        if int(rows.min()) < 0 or bool((spans[..., 1] < spans[..., 0]).any()) or int(spans.min()) < 0:
            raise CaptureError("rows must be >= 0 and spans [start, end) with 0 <= start <= end")
        self.capture = capture
        self.rows = rows
        self.spans = spans
        self._row_span = (int(rows.min()), int(rows.max()))  # Python ints: no device sync per layer
        self.first_row = self._row_span[0]  # as given (a prompt position under run_prompt), never shifted
        self.mass: torch.Tensor | None = None  # [B, layers, heads, Q, R], NaN until a layer reports
        self.remainder: torch.Tensor | None = None  # [B, layers, heads, Q]
        self.argmax: torch.Tensor | None = None  # [B, layers, heads, Q] absolute key positions, -1 until reported
        self.tokens = tokens
        self.token_mass: torch.Tensor | None = None  # [B, layers, Q, keys] absolute key positions, NaN until reported
        self._total_tokens: int | None = None
        self._forwards = 0
        self._token = None
        self._on_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def set_query_start(self, start: int) -> None:
        """Read ``rows`` as positions of the whole sequence whose forward starts at token ``start``.

        For a prompt run as an extension of a cached prefix (``run_prompt(..., prefix=...)`` calls
        this): row ``r`` becomes query ``r - start`` of that forward; rows inside the prefix are refused.
        """
        if start == 0:
            return
        if self._token is not None or self.mass is not None:
            raise CaptureError("set_query_start must be called before the recorded forward")
        if self._row_span[0] < start:
            raise CaptureError(
                f"capture row {self._row_span[0]} lies in the reused prefix (tokens [0, {start})); "
                "rows must come after it (needle onward), or turn reuse_prefix off"
            )
        self.rows = self.rows - start
        self._row_span = (self._row_span[0] - start, self._row_span[1] - start)
        self._on_device.clear()

    def __enter__(self) -> AttentionRecording:
        if self._token is not None or self.remainder is not None:
            raise CaptureError("a recording covers one forward call; ask capture.record(...) for a new one")
        self._token = _ACTIVE.set(self)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        _ACTIVE.reset(self._token)
        if exc_type is not None:
            return
        if self.mass is None:
            raise CaptureError(
                f"no attention layer reported inside the record block (implementation is "
                f"'{self.capture.model.config._attn_implementation}', expected '{self.capture.name}')"
            )
        self.remainder = 1.0 - self.mass.sum(-1)

    def _start_forward(self, args: tuple, kwargs: dict) -> None:
        self._forwards += 1
        if self._forwards > 1:
            raise CaptureError("a record block covers exactly one forward call; open one block per forward")
        self._total_tokens = forward_total_tokens(args, kwargs)

    def _observe(self, module: Any, query: torch.Tensor, key: torch.Tensor, mask: Any, kind: str, kwargs: dict):
        """Called by the wrapper after the inner kernel: query [B, H, Lq, D], key [B, Hkv, Lk, D]."""
        capture = self.capture
        if id(module) not in capture._module_ids:
            return
        layer = getattr(module, "layer_idx", None)
        batch, heads, q_len, dim = query.shape
        if layer is None or not 0 <= layer < capture.num_layers:
            raise CaptureError(f"{type(module).__name__} has no usable layer_idx ({layer!r}); cannot capture it")
        if batch != self.rows.shape[0] or self._row_span[1] >= q_len:
            raise CaptureError(
                f"rows {tuple(self.rows.shape)} (max {self._row_span[1]}) do not fit queries B={batch}, Lq={q_len}"
            )
        if kwargs.get("position_bias") is not None:
            raise CaptureError(f"{type(module).__name__} adds a position bias, which capture does not model")
        rows, spans = self._tensors_on(query.device)
        k_len, group = key.shape[2], heads // key.shape[1]
        # keys dropped by a sliding-window cache: key index 0 is absolute position total - Lk
        offset = max(self._total_tokens - k_len, 0) if self._total_tokens is not None else 0
        scaling = kwargs.get("scaling")
        is_causal = kwargs.get("is_causal")
        with torch.no_grad():
            q_rows = query.gather(2, rows[:, None, :, None].expand(batch, heads, rows.shape[1], dim))
            bias = calibrated_mask_bias(layer, rows, q_len, heads, group, k_len, offset, self._total_tokens, mask_bias(
                kind, mask, rows, q_len, k_len, group,
                sliding_window=kwargs.get("sliding_window"),
                is_causal=getattr(module, "is_causal", True) if is_causal is None else bool(is_causal),
                row_span=self._row_span,
            ))  # fmt: skip
            mass, argmax, token_mass = region_mass_argmax_tokens(
                q_rows, key, (spans - offset).clamp(0, k_len), dim**-0.5 if scaling is None else scaling, bias,
                softcap=kwargs.get("softcap"), sinks=kwargs.get("s_aux"), chunk_tokens=capture.chunk_tokens,
                tokens=self.tokens,
            )  # [B, H, Q, R]; token_mass [B, Q, Lk] or None  # fmt: skip
        if self.mass is None:
            shape = (batch, capture.num_layers, heads, rows.shape[1], spans.shape[1])
            self.mass = torch.full(shape, float("nan"), dtype=torch.float32, device=query.device)
            self.argmax = torch.full(shape[:-1], -1, dtype=torch.long, device=query.device)
        self.mass[:, layer] = mass
        self.argmax[:, layer] = torch.where(argmax >= 0, argmax + offset, argmax)
        if token_mass is not None:
            self._store_tokens(layer, token_mass, offset)

    def _store_tokens(self, layer: int, token_mass: torch.Tensor, offset: int) -> None:
        """Put one layer's ``[B, Q, Lk]`` per-key mass at absolute key positions (a sliding window's dropped keys: 0)."""
        if self.token_mass is None:  # layers that never report stay NaN
            keys = max(self._total_tokens or 0, offset + token_mass.shape[-1])
            batch, rows = token_mass.shape[:2]
            self.token_mass = torch.full((batch, self.capture.num_layers, rows, keys), float("nan"),
                                         dtype=torch.float32, device=token_mass.device)
        self.token_mass[:, layer] = 0.0
        self.token_mass[:, layer, :, offset:offset + token_mass.shape[-1]] = token_mass

    def _tensors_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._on_device:
            self._on_device[device] = (self.rows.to(device), self.spans.to(device))
        return self._on_device[device]


def _make_wrapper(inner: str):
    """The function registered as ``capture_<inner>``: inner kernel for the output, capture only when recording."""
    kind = kernel_kind(inner)
    if kind == KERNEL_EAGER:
        call_inner = _call_module_eager
    elif kind == KERNEL_FLASH:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        flash = ALL_ATTENTION_FUNCTIONS[inner]

        def call_inner(module, *args, **kwargs):
            return flash(_FlashModuleView(module, inner), *args, **kwargs)
    else:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

        call_inner = ALL_ATTENTION_FUNCTIONS[inner]

    def capture_attention(module, query, key, value, attention_mask, *args, **kwargs):
        output = call_inner(module, query, key, value, attention_mask, *args, **kwargs)
        calibration = active_calibration()
        if calibration is not None and id(module) in calibration.module_ids:
            output = calibration.calibrate_output(module, query, key, value, attention_mask, kind, kwargs, output)
        recording = _ACTIVE.get()
        if recording is not None:
            recording._observe(module, query, key, attention_mask, kind, kwargs)
        return output

    capture_attention.__name__ = NAME_PREFIX + inner
    return capture_attention


def _call_module_eager(module, *args, **kwargs):
    """The family's own ``eager_attention_forward`` (it carries softcap, sinks and other family details)."""
    function = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
    if function is None:
        raise CaptureError(f"{type(module).__module__} has no eager_attention_forward; use inner='sdpa'")
    return function(module, *args, **kwargs)


class _FlashModuleView:
    """The attention module as the flash kernel must see it: transformers' flash code loads the kernel named by
    ``module.config._attn_implementation``, which would be ``capture_flash_...`` (unknown to its loader)."""

    def __init__(self, module: Any, inner: str) -> None:
        self._module = module
        self.config = _ConfigView(module.config, inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _ConfigView:
    def __init__(self, config: Any, inner: str) -> None:
        self._config = config
        self._attn_implementation = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def _family(model: Any) -> str:
    return f"model family '{getattr(model.config, 'model_type', '?')}' ({type(model).__name__})"


def check_capturable(model: Any) -> None:
    """Raise CaptureError unless the model's attention layers call transformers' AttentionInterface (a question of
    the family and the installed transformers, not of the kernel: ``model`` may be a meta-device skeleton)."""
    can_set = getattr(type(model), "_can_set_attn_implementation", None)
    settable = can_set() if can_set is not None else True
    modules = {sys.modules.get(type(m).__module__) for m in model.modules()}
    routed = any(hasattr(mod, "ALL_ATTENTION_FUNCTIONS") for mod in modules if mod is not None)
    if not (settable and routed):
        raise CaptureError(
            f"attention capture is not possible for {_family(model)}: it has no attention layers that go through "
            f"transformers' AttentionInterface; {_HINT}"
        )


def _choose_inner(model: Any, inner: str | None) -> str:
    """``sdpa`` unless the family needs its eager kernel (softcap, sinks: then sdpa is unsupported)."""
    text_config = model.config.get_text_config()
    needs_eager = getattr(text_config, "attn_logit_softcapping", None) is not None or not getattr(
        model, "_supports_sdpa", True
    )
    if inner is None:
        return "eager" if needs_eager else "sdpa"
    if inner == "sdpa" and needs_eager:
        raise CaptureError(
            f"{_family(model)} cannot run on sdpa (softcap or sinks); use inner='eager' or a flash kernel"
        )
    if inner not in ("sdpa", "eager") and not inner.startswith("flash_attention_"):
        raise CaptureError(f"inner attention '{inner}' is not one of sdpa, eager, flash_attention_2, flash_attention_3")
    return inner


def _switch(model: Any, inner: str, name: str) -> None:
    """Point the model at ``name``; errors of the inner kernel (not installed, unsupported) become CaptureError."""
    try:
        if kernel_kind(inner) == KERNEL_FLASH:
            # transformers loads flash kernels by the implementation's name: load the real one, then rename
            model.set_attn_implementation(inner)
            for module in model.modules():
                config = getattr(module, "config", None)
                if getattr(config, "_attn_implementation", None) == inner:
                    config._attn_implementation = name
        else:
            model.set_attn_implementation(name)
    except (ValueError, ImportError) as error:
        raise CaptureError(f"cannot use '{inner}' for {_family(model)}: {error}; {_HINT}") from error
    if model.config._attn_implementation != name:
        raise CaptureError(f"{_family(model)} did not accept attention implementation '{name}'; {_HINT}")


def _as_index(value: Any, dims: int, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(value)
    if tensor.dim() != dims or tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        raise CaptureError(
            f"{what} must be an integer tensor with {dims} dims, got {tuple(tensor.shape)} {tensor.dtype}"
        )
    return tensor.long()

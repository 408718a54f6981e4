"""Attention capture of one trial: the recorder a backend attaches, and what to ask it to record.

    attach_capture(model, settings)    the recorder factory the runner hands to a backend that can capture
    capture_request(prompt, settings)  the region layout and the ``CaptureRequest`` (key spans, decode rows)

The trial's stored arrays are assembled from the backend's ``CapturedRows`` by ``attention/rows.py``.

The model's output is untouched: capture wraps its normal kernel (see evalkit/attention/capture.py), and the
trial runs through the same backend path as without capture, with a record block around the prefill forward
and around each of the first ``decode_steps`` decode forwards (``models/transformers_backend.py``).
"""

from __future__ import annotations

from typing import Any

from evalkit.attention.capture import AttentionCapture
from evalkit.attention.regions import RegionLayout, region_layout
from evalkit.config.schema import AttentionConfig
from evalkit.models.base import CaptureRequest
from evalkit.types import BuiltPrompt


def attach_capture(model: Any, settings: AttentionConfig) -> Any:
    """Switch ``model`` to capture with ``settings.inner`` (``auto``: the family's choice); CaptureError if not."""
    return AttentionCapture.attach(model, None if settings.inner == "auto" else settings.inner)


def capture_request(prompt: BuiltPrompt, settings: AttentionConfig, distractor_spans: tuple[tuple[int, int], ...] = (),
                    ) -> tuple[RegionLayout, CaptureRequest]:
    """The trial's region layout and what the backend records: its key spans (``distractor_spans``: the placed
    look-alikes', as regions of their own) and ``decode_steps`` rows."""
    layout = region_layout(prompt, settings.bins, settings.sink_tokens, settings.decode_steps, distractor_spans)
    spans = tuple((int(start), int(end)) for start, end in layout.spans)
    return layout, CaptureRequest(spans=spans, decode_steps=settings.decode_steps, tokens=settings.tokens,
                                  token_layers=tuple(settings.token_layers))

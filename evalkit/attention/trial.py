"""Run one trial's prompt with attention capture: the prefill row and the first decode rows, per layer and head.

The model's output is untouched: capture wraps its normal kernel (see evalkit/attention/capture.py), and the
trial runs through the same ``run_prompt`` as without capture, with a record block around the prefill forward
and around each of the first ``decode_steps`` decode forwards.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from evalkit.attention.regions import RegionLayout, region_layout
from evalkit.attention.token_mass import stack_token_mass
from evalkit.store.attention_arrays import TrialAttention
from evalkit.config.schema import AttentionConfig
from evalkit.types import REGION_NEEDLE, BuiltPrompt, TrialOutput


def attach_capture(model: Any, settings: AttentionConfig) -> Any:
    """Switch ``model`` to capture with ``settings.inner`` (``auto``: the family's choice); CaptureError if not."""
    from evalkit.attention.capture import AttentionCapture

    return AttentionCapture.attach(model, None if settings.inner == "auto" else settings.inner)


def run_captured(
    loaded: Any,
    capture: Any,
    prompt: BuiltPrompt,
    gold_ids: Sequence[int],
    max_new_tokens: int,
    settings: AttentionConfig,
    stop_token_ids: Sequence[int] | None = None,
    **reuse: Any,
) -> tuple[TrialOutput, TrialAttention]:
    """``run_prompt`` with capture on; returns its output and the trial's attention arrays.

    ``reuse`` (``prefix``, ``prefix_tokens``) passes through to ``run_prompt``: the captured rows
    (last prompt token, decode steps) always lie after a reused prefix.
    """
    import torch

    from evalkit.models import run_prompt

    layout = region_layout(prompt, settings.bins, settings.sink_tokens, settings.decode_steps)
    spans = torch.tensor([layout.spans], dtype=torch.long)  # [1, R, 2] absolute key positions (no padding)
    tokens = settings.tokens  # attention.tokens: also the mass on every key (token_mass.py)
    prefill = capture.record(torch.tensor([[prompt.prompt_tokens - 1]]), spans, tokens=tokens)  # last prompt token
    decodes: list[Any] = []

    def decode_step(k: int):
        if k > settings.decode_steps:
            return None
        recording = capture.record(torch.zeros((1, 1), dtype=torch.long), spans, tokens=tokens)  # feeds one token
        decodes.append(recording)
        return recording

    # decode rows need one forward per answer token; without them the answer comes from the draft forward
    output = run_prompt(loaded, prompt.input_ids, gold_ids, max_new_tokens, stop_token_ids, prefill_context=prefill,
                        decode_context=decode_step if settings.decode_steps else None, **reuse)
    attention = _assemble(layout, prompt, output, [prefill, *decodes], settings.decode_steps + 1)
    if tokens:
        token_mass, layers = stack_token_mass([prefill, *decodes], settings.decode_steps + 1, prompt.prompt_tokens,
                                              settings.token_layers)
        attention = dataclasses.replace(attention, token_mass=token_mass, token_layers=layers)
    return output, attention


def _assemble(layout: RegionLayout, prompt: BuiltPrompt, output: TrialOutput, recordings: list[Any],
              rows: int) -> TrialAttention:
    """Stack the recordings' row 0 into [layers, heads, rows, ...] arrays; rows never reached stay NaN / -1."""
    first = recordings[0].mass  # [1, layers, heads, 1, R]
    layers, heads, regions = first.shape[1], first.shape[2], first.shape[4]
    mass = np.full((layers, heads, rows, regions), np.nan, dtype=np.float32)
    argmax = np.full((layers, heads, rows), -1, dtype=np.int64)
    for row, recording in enumerate(recordings):
        mass[:, :, row] = recording.mass[0, :, :, 0].float().cpu().numpy()
        argmax[:, :, row] = recording.argmax[0, :, :, 0].cpu().numpy()
    tokens = np.array([*prompt.input_ids, *output.generated_token_ids], dtype=np.int64)  # every key's token id
    argmax_token = np.where(argmax >= 0, tokens[np.clip(argmax, 0, len(tokens) - 1)], -1)
    generated = output.generated_token_ids
    row_token = np.array([generated[r] if r < len(generated) else -1 for r in range(rows)], dtype=np.int64)
    start, end = layout.span(REGION_NEEDLE)
    needle_tokens = set(prompt.input_ids[start:end])
    return TrialAttention(
        mass=mass,
        remainder=1.0 - mass[..., : layout.partition_size].sum(-1),  # [layers, heads, rows]
        argmax_position=argmax,
        argmax_token=argmax_token,
        row_token=row_token,
        row_in_needle=np.array([int(t) in needle_tokens for t in row_token]),
        region_names=layout.names,
        spans=np.array(layout.spans, dtype=np.int64),
        bins=layout.bins,
        prompt_tokens=prompt.prompt_tokens,
    )

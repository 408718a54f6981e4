"""The first passes of the arms that look before they answer: ``attention_sort`` and ``calibrate_attention``.

Each runs one captured forward before the trial's answer and says what it cost (``FirstPass``, which the
record keeps as ``extra_forwards``, ``extra_prompt_tokens`` and a few ``extra`` fields):

    attention_sort       the baseline's own prompt; the documents' captured masses order the answer's prompt
    calibrate_attention  the same prompt with every document content-free; each position's per-token mass is the
                         positional bias the answer pass divides out (``attention/calibration.py``)

``run`` is the caller's way of sending one captured request for a built prompt (the runner's session);
nothing here touches the run directory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from evalkit.attention.calibration import log_bias_from_probe
from evalkit.attention.sort import attention_order, document_mass_by_head, document_masses
from evalkit.attention.trial import capture_request
from evalkit.config.entries import AttentionConfig
from evalkit.errors import ConfigError
from evalkit.models.base import CalibrationRequest, CaptureRequest
from evalkit.prompt.trial_prompt import TrialPrompt
from evalkit.types import TrialOutput

RunCaptured = Callable[[TrialPrompt, CaptureRequest, int], TrialOutput]  # (prompt, capture, max_new_tokens)


@dataclass(frozen=True)
class FirstPass:
    """What a first pass adds to its trial's record."""

    extra: dict[str, Any]
    forwards: int
    prompt_tokens: int


def attention_sort_pass(run: RunCaptured, baseline: TrialPrompt, settings: AttentionConfig,
                        max_new_tokens: int) -> tuple[list[int], FirstPass]:
    """The documents' order for the answer pass (by the baseline prompt's captured mass, most attended last)."""
    layout, request = capture_request(baseline.prompt, settings)
    output = run(baseline, request, max_new_tokens)
    masses = document_masses(output.attention.mass, layout)
    order = attention_order(masses)
    extra = {"first_pass_masses": [round(m, 6) for m in masses], "first_pass_order": order,
             "first_pass_generated": output.generated_text, "first_pass_gold_index": baseline.gold_document_index}
    return order, FirstPass(extra, 1, baseline.prompt.prompt_tokens)


def calibration_pass(run: RunCaptured, probe: TrialPrompt, answer: TrialPrompt, arm: Any,
                     settings: AttentionConfig) -> tuple[CalibrationRequest, FirstPass]:
    """The answer pass's calibration, measured on ``probe`` (``answer``'s prompt, documents content-free)."""
    layout, request = capture_request(probe.prompt, settings)
    # only the last prompt token's row is read: no decode rows, no per-token mass, one answer token
    output = run(probe, dataclasses.replace(request, decode_steps=0, tokens=False), 1)
    mass = document_mass_by_head(output.attention.mass, layout)  # [layers, heads, documents]
    _check_layers(arm, mass.shape[0])
    tokens = [span.length for span in probe.prompt.document_spans]
    log_bias = log_bias_from_probe(mass, tokens, arm.strength, calibrated_layers(arm, mass.shape[0]))
    spans = tuple((span.token_start, span.token_end) for span in answer.prompt.document_spans)
    calibration = CalibrationRequest(spans, log_bias, answer.prompt.prompt_tokens - 1)
    extra = {"calibration_bias": _mean_bias(log_bias, arm.strength), "calibrated_layers": calibrated_layers(arm, mass.shape[0]),
             "probe_generated": output.generated_text}
    return calibration, FirstPass(extra, 1, probe.prompt.prompt_tokens)


def _check_layers(arm: Any, layers: int) -> None:
    missing = [layer for layer in arm.layers or () if layer >= layers]
    if missing:
        raise ConfigError(f"mitigations: {arm.label}: layers {missing} are not in this model (layers 0-{layers - 1}); "
                          "fix calibrate_attention's layers")


def calibrated_layers(arm: Any, layers: int) -> list[int]:
    """The arm's ``layers``, or by default the later half of the model's (Found in the Middle calibrates the
    last 16 of 32)."""
    return sorted(arm.layers) if arm.layers is not None else list(range(layers // 2, layers))


def _mean_bias(log_bias: np.ndarray, strength: float) -> list[float] | None:
    """Each position's bias (normalised per-token density), the geometric mean over the calibrated heads that
    see it; None at strength 0."""
    calibrated = np.abs(log_bias).sum(axis=(1, 2)) > 0
    if strength == 0 or not calibrated.any():
        return None
    heads = log_bias[calibrated].reshape(-1, log_bias.shape[-1]) / strength  # [calibrated heads, documents]
    seen = heads != 0
    mean = np.where(seen.any(axis=0), heads.sum(axis=0) / np.maximum(seen.sum(axis=0), 1), 0.0)
    return [round(float(x), 4) for x in np.exp(mean)]

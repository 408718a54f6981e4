"""Found-in-the-Middle calibration (evalkit/attention/calibration.py) on tiny random-init models.

The calibrated model is compared with independent computations: an eager model given the calibration as an
additive 4-D attention mask (the same logits shift, applied by transformers' own eager kernel), and eager
attention weights calibrated by hand (``p * exp(-log_bias)``, renormalised)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capture_fixtures import VOCAB, build_model
from evalkit.attention.calibration import log_bias_from_probe
from evalkit.attention.capture import AttentionCapture
from evalkit.errors import CaptureError
from evalkit.models.base import CalibrationRequest

TOKENS = 16
SPANS = ((2, 6), (6, 10), (10, 14))  # three "documents"
PER_DOCUMENT = torch.tensor([0.7, -0.4, 1.1])


def _ids() -> torch.Tensor:
    return torch.randint(3, VOCAB, (1, TOKENS), generator=torch.Generator().manual_seed(3))


def _uniform_bias(model, values: torch.Tensor) -> np.ndarray:
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    return np.broadcast_to(values.numpy(), (layers, heads, len(values))).astype(np.float32).copy()


def _mask_reference(model, ids: torch.Tensor, answer_start: int, values: torch.Tensor) -> torch.Tensor:
    """Logits of the eager model whose rows from ``answer_start`` on get ``-values[k]`` on document k's keys."""
    mask = torch.full((TOKENS, TOKENS), float("-inf")).triu(1)
    for k, (start, end) in enumerate(SPANS):
        mask[answer_start:, start:end] -= values[k]
    model.set_attn_implementation("eager")
    with torch.no_grad():
        return model(ids, attention_mask=mask[None, None]).logits


@pytest.mark.parametrize("answer_start", [TOKENS - 1, TOKENS - 3])  # the last prompt token; a draft forward
def test_calibrated_rows_equal_the_eager_model_with_the_shift_in_its_mask(answer_start):
    model = build_model("llama")
    ids = _ids()
    with torch.no_grad():
        plain = model(ids).logits
    capture = AttentionCapture.attach(model)
    request = CalibrationRequest(SPANS, _uniform_bias(model, PER_DOCUMENT), answer_start)
    with torch.no_grad(), capture.calibrate(request):
        calibrated = model(ids).logits
    capture.detach()
    expected = _mask_reference(model, ids, answer_start, PER_DOCUMENT)
    torch.testing.assert_close(calibrated[:, answer_start:], expected[:, answer_start:], rtol=1e-5, atol=5e-5)
    assert torch.equal(calibrated[:, :answer_start], plain[:, :answer_start])  # rows before the answer: the kernel's
    assert not torch.allclose(calibrated[:, -1], plain[:, -1], atol=1e-3)  # the shift mattered


def test_a_decode_step_after_the_prompt_is_calibrated_at_its_absolute_position():
    from transformers import DynamicCache

    model = build_model("llama")
    ids = _ids()
    capture = AttentionCapture.attach(model)
    request = CalibrationRequest(SPANS, _uniform_bias(model, PER_DOCUMENT), TOKENS - 2)  # prompt = 15 tokens
    cache = DynamicCache(config=model.config)
    with torch.no_grad(), capture.calibrate(request):
        model(ids[:, :-1], past_key_values=cache, use_cache=True)
        step = model(ids[:, -1:], past_key_values=cache, use_cache=True).logits
    capture.detach()
    expected = _mask_reference(model, ids, TOKENS - 2, PER_DOCUMENT)
    torch.testing.assert_close(step[:, -1], expected[:, -1], rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("family", ["llama", "gemma3"])  # GQA; a sliding-window layer (window 8)
def test_captured_calibrated_row_equals_eager_weights_calibrated_by_hand(family):
    model = build_model(family)
    ids = _ids()
    layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
    log_bias = np.zeros((layers, heads, len(SPANS)), dtype=np.float32)
    log_bias[1] = np.random.default_rng(0).normal(0, 1, (heads, len(SPANS)))  # per head, the last layer only
    model.set_attn_implementation("eager")
    with torch.no_grad():
        weights = model(ids, output_attentions=True).attentions[1][0, :, -1].double()  # [heads, keys]
    factor = torch.ones_like(weights)
    for k, (start, end) in enumerate(SPANS):
        factor[:, start:end] = torch.exp(-torch.as_tensor(log_bias[1, :, k], dtype=torch.float64))[:, None]
    by_hand = weights * factor / (weights * factor).sum(-1, keepdim=True)
    expected = torch.stack([by_hand[:, a:b].sum(-1) for a, b in SPANS], -1)  # [heads, documents]
    model.set_attn_implementation("sdpa")
    capture = AttentionCapture.attach(model)
    spans = torch.tensor([list(SPANS)])
    with torch.no_grad(), capture.calibrate(CalibrationRequest(SPANS, log_bias, TOKENS - 1)):
        with capture.record(torch.tensor([[TOKENS - 1]]), spans) as recording:
            model(ids)
    with torch.no_grad(), capture.record(torch.tensor([[TOKENS - 1]]), spans) as plain:
        model(ids)
    capture.detach()
    torch.testing.assert_close(recording.mass[0, 1, :, 0].double(), expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(recording.mass[0, 0], plain.mass[0, 0], rtol=0, atol=0)  # layer 0: untouched
    assert not torch.allclose(recording.mass[0, 1], plain.mass[0, 1], atol=1e-3)


def test_the_probe_bias_is_a_mean_one_density_and_zero_outside_the_chosen_layers():
    mass = np.array([[[0.4, 0.1, 0.2]], [[0.3, 0.3, 0.3]]], dtype=np.float32)  # [2 layers, 1 head, 3 documents]
    tokens = [4, 2, 4]  # densities layer 0: 0.1, 0.05, 0.05 -> normalised 1.5, 0.75, 0.75
    out = log_bias_from_probe(mass, tokens, strength=0.5, layers=[0])
    np.testing.assert_allclose(out[0, 0], 0.5 * np.log([1.5, 0.75, 0.75]), rtol=1e-6)
    assert not out[1].any()  # layer 1 not chosen
    both = log_bias_from_probe(mass, tokens, strength=1.0, layers=None)
    np.testing.assert_allclose(both[1, 0], np.log(np.array([0.075, 0.15, 0.075]) / 0.1), rtol=1e-6)
    unseen = log_bias_from_probe(np.zeros((1, 1, 3), np.float32), tokens, 1.0, None)  # a head that sees none
    assert not unseen.any()
    # a sliding-window head that sees only the last two documents: they share mean 1, the first stays 0
    window = log_bias_from_probe(np.array([[[0.0, 0.1, 0.3]]], np.float32), [1, 1, 1], 1.0, None)
    np.testing.assert_allclose(window[0, 0], [0.0, np.log(0.5), np.log(1.5)], rtol=1e-6)


def test_a_calibration_of_the_wrong_depth_is_refused():
    model = build_model("llama")
    capture = AttentionCapture.attach(model)
    with pytest.raises(CaptureError, match="3 layers, the model 2"):
        capture.calibrate(CalibrationRequest(SPANS, np.zeros((3, 4, 3), np.float32), TOKENS - 1))
    capture.detach()

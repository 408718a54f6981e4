"""Attention capture (evalkit/attention/capture.py) against eager ``output_attentions`` ground truth, float32.

Tiny random-init models of ten families (tests/capture_fixtures.py). Ground truth: the same weights run with
``attn_implementation="eager"`` and ``output_attentions=True``, weights summed over the same key spans.
"""

from __future__ import annotations

import pytest
import torch
from capture_fixtures import (
    FAMILIES,
    VOCAB,
    WINDOW,
    build_falcon,
    build_mamba,
    build_model,
    calls_attention_interface,
)

from evalkit.errors import CaptureError
from evalkit.attention.capture import AttentionCapture
from evalkit.attention.capture_math import mask_bias, region_mass

TOL = 1e-5
LONG, SHORT = 24, 17  # prompt lengths; both longer than the sliding window
PAD = LONG - SHORT
# regions in prompt-token coordinates; they leave gaps (tokens 10-11 and 22-23) so the remainder is exercised
REGIONS = [[0, 4], [4, 10], [12, 13], [13, 22]]
ROWS = [LONG - 1, 11]  # last prompt position and a middle one
FAMILY_IDS = [family.name for family in FAMILIES]


@pytest.fixture(scope="module", params=FAMILIES, ids=FAMILY_IDS)
def family_model(request):
    return request.param, build_model(request.param.name)


@pytest.fixture(scope="module")
def prompts():
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (2, LONG + 1), generator=generator)  # one extra token per row for decode
    return ids


def _padded_batch(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row 0 full length, row 1 left-padded by PAD. Returns input_ids [2, LONG], attention_mask [2, LONG]."""
    batch = ids[:, :LONG].clone()
    batch[1, :PAD] = 0
    batch[1, PAD:] = ids[1, :SHORT]
    mask = torch.ones_like(batch)
    mask[1, :PAD] = 0
    return batch, mask


def _spans(pads: list[int]) -> torch.Tensor:
    """[B, R, 2] absolute key spans: the prompt regions shifted by each item's left padding."""
    return torch.tensor([[[start + pad, end + pad] for start, end in REGIONS] for pad in pads])


def _eager_mass(model, ids, mask, rows: torch.Tensor, spans: torch.Tensor) -> torch.Tensor:
    """Ground truth [B, layers, heads, Q, R] from eager attention weights of a full forward."""
    model.set_attn_implementation("eager")
    with torch.no_grad():
        weights = torch.stack(model(ids, attention_mask=mask, output_attentions=True).attentions, 1)
    # weights: [B, layers, heads, Lq, Lk]
    per_row = torch.stack([weights[b, :, :, rows[b]] for b in range(len(rows))])  # [B, layers, heads, Q, Lk]
    last_row = weights[:, :, :, -1]  # with sinks (gpt-oss) a row sums to less than 1: compare shares
    peak_share = last_row.max(-1).values / last_row.sum(-1)
    assert (peak_share > 3.0 / last_row.shape[-1]).float().mean() > 0.9, "attention is not peaky"
    return torch.stack(
        [torch.stack([per_row[b, ..., s:e].sum(-1) for s, e in spans[b].tolist()], -1) for b in range(len(rows))]
    )


def _with_cache(model, cache) -> dict:
    """The cache keyword: ``cache`` from transformers 5.2x on (``past_key_values`` warns there), before it not."""
    import inspect

    return {"cache": cache} if "cache" in inspect.signature(model.forward).parameters else {"past_key_values": cache}


def _captured(model, ids, mask, rows, spans, inner=None, chunk_tokens=4096, cache=None):
    capture = AttentionCapture.attach(model, inner, chunk_tokens=chunk_tokens)
    try:
        with torch.no_grad(), capture.record(rows, spans) as rec:
            logits = model(ids, attention_mask=mask, **_with_cache(model, cache)).logits
    finally:
        capture.detach()
    return rec, logits


def test_prefill_single_prompt_matches_eager(family_model, prompts):
    family, model = family_model
    ids, rows, spans = prompts[:1, :LONG], torch.tensor([ROWS]), _spans([0])
    expected = _eager_mass(model, ids, None, rows, spans)
    rec, _ = _captured(model, ids, None, rows, spans)
    assert rec.mass.shape == (1, 2, 4, 2, len(REGIONS))
    torch.testing.assert_close(rec.mass, expected, atol=TOL, rtol=0)


def test_prefill_left_padded_batch_matches_eager(family_model, prompts):
    family, model = family_model
    ids, mask = _padded_batch(prompts)
    rows, spans = torch.tensor([ROWS, ROWS]), _spans([0, PAD])
    expected = _eager_mass(model, ids, mask, rows, spans)
    rec, _ = _captured(model, ids, mask, rows, spans)
    torch.testing.assert_close(rec.mass, expected, atol=TOL, rtol=0)


@pytest.mark.parametrize("padded", [False, True], ids=["single", "left_padded"])
def test_argmax_position_matches_eager_at_prefill_and_decode(family_model, prompts, padded):
    """Each row's strongest key (absolute position) is where eager's weights peak, at prefill and first decode."""
    from transformers import DynamicCache

    family, model = family_model
    if padded:
        (ids, mask), pads = _padded_batch(prompts), [0, PAD]
    else:
        ids, mask, pads = prompts[:1, :LONG], None, [0]
    new_token = prompts[: len(pads), LONG:]  # [B, 1]
    full_ids = torch.cat([ids, new_token], 1)
    full_mask = None if mask is None else torch.cat([mask, torch.ones_like(new_token)], 1)
    model.set_attn_implementation("eager")
    with torch.no_grad():
        weights = torch.stack(model(full_ids, attention_mask=full_mask, output_attentions=True).attentions, 1)
    # weights: [B, layers, heads, Lq, Lk]; prefill rows ROWS, decode row LONG

    capture = AttentionCapture.attach(model, chunk_tokens=5)  # several chunks: the running argmax is exercised
    try:
        cache = DynamicCache(config=model.config)
        with torch.no_grad():
            with capture.record(torch.tensor([ROWS] * len(pads)), _spans(pads)) as prefill:
                model(ids, attention_mask=mask, use_cache=True, **_with_cache(model, cache))
            with capture.record(torch.zeros((len(pads), 1), dtype=torch.long), _spans(pads)) as decode:
                model(new_token, attention_mask=full_mask, use_cache=True, **_with_cache(model, cache))
    finally:
        capture.detach()
    for rec, rows in ((prefill, ROWS), (decode, [LONG])):
        assert rec.argmax.shape == rec.mass.shape[:-1] and int(rec.argmax.min()) >= 0
        for q, row in enumerate(rows):
            row_weights = weights[:, :, :, row]  # [B, layers, heads, Lk]
            at_argmax = row_weights.gather(-1, rec.argmax[..., q, None])[..., 0]
            # the captured position carries the row's largest weight (ties aside, it is eager's argmax)
            torch.testing.assert_close(at_argmax, row_weights.max(-1).values, atol=1e-6, rtol=0)
            agree = (rec.argmax[..., q] == row_weights.argmax(-1)).float().mean()
            assert agree > 0.95


def test_region_mass_argmax_by_hand():
    """Argmax over chunks keeps the first index on ties and skips masked keys."""
    from evalkit.attention.capture_math import region_mass_argmax

    query = torch.ones(1, 1, 1, 1)  # [B, H, Q, D]
    key = torch.tensor([1.0, 3.0, 2.0, 3.0, 5.0]).view(1, 1, 5, 1)  # [B, Hkv, Lk, D]
    bounds = torch.tensor([[[0, 5]]])
    masked_last = torch.tensor([0.0, 0.0, 0.0, 0.0, float("-inf")])
    bias = lambda s, e: masked_last[s:e].view(1, 1, 1, -1)  # noqa: E731
    _, argmax = region_mass_argmax(query, key, bounds, 1.0, bias, chunk_tokens=2)
    assert argmax.tolist() == [[[1]]]  # keys 1 and 3 tie (in different chunks); key 4 is masked


@pytest.mark.parametrize("cache_kind", ["dynamic", "static"])
@pytest.mark.parametrize("padded", [False, True], ids=["single", "left_padded"])
def test_first_decode_step_matches_eager_last_row(family_model, prompts, padded, cache_kind):
    """One new token on the prefilled cache; sliding layers' caches have dropped their oldest keys by then."""
    from transformers import DynamicCache, StaticCache

    family, model = family_model
    if padded:
        ids, mask = _padded_batch(prompts)
        pads = [0, PAD]
    else:
        ids, mask, pads = prompts[:1, :LONG], None, [0]
    new_token = prompts[: len(pads), LONG:]  # [B, 1]
    full_ids = torch.cat([ids, new_token], 1)
    full_mask = None if mask is None else torch.cat([mask, torch.ones_like(new_token)], 1)
    spans = _spans(pads)
    spans[:, -1, 1] += 2  # last region reaches the new token (absolute position LONG)
    expected = _eager_mass(model, full_ids, full_mask, torch.full((len(pads), 1), LONG), spans)

    capture = AttentionCapture.attach(model)
    try:
        if cache_kind == "static":
            cache = StaticCache(config=model.config, max_cache_len=LONG + 8)
        else:
            cache = DynamicCache(config=model.config)
        with torch.no_grad():
            model(ids, attention_mask=mask, use_cache=True, **_with_cache(model, cache))  # prefill, not recorded
            with capture.record(torch.zeros((len(pads), 1), dtype=torch.long), spans) as rec:
                model(new_token, attention_mask=full_mask, use_cache=True, **_with_cache(model, cache))
    finally:
        capture.detach()
    torch.testing.assert_close(rec.mass, expected, atol=TOL, rtol=0)


def test_logits_identical_with_and_without_capture(family_model, prompts):
    family, model = family_model
    ids, mask = _padded_batch(prompts)
    model.set_attn_implementation(family.inner)
    with torch.no_grad():
        plain = model(ids, attention_mask=mask).logits
    rec, logits = _captured(model, ids, mask, torch.tensor([ROWS, ROWS]), _spans([0, PAD]))
    assert torch.equal(logits, plain)
    assert model.config._attn_implementation == family.inner  # detach restored it


def test_remainder_is_the_mass_outside_every_span(family_model, prompts):
    family, model = family_model
    ids, rows, spans = prompts[:1, :LONG], torch.tensor([ROWS]), _spans([0])
    covered = torch.zeros(LONG, dtype=torch.bool)
    for start, end in REGIONS:
        covered[start:end] = True
    gaps = [[i, i + 1] for i in range(LONG) if not covered[i]]
    outside = _eager_mass(model, ids, None, rows, torch.tensor([gaps])).sum(-1)  # [1, layers, heads, Q]
    rec, _ = _captured(model, ids, None, rows, spans)
    if family.name == "gpt_oss":  # the sink takes a share that belongs to no key: it lands in the remainder
        assert bool((rec.remainder > outside + 1e-4).any())
    else:
        torch.testing.assert_close(rec.remainder, outside, atol=TOL, rtol=0)
    assert bool((outside > 1e-3).any())  # the gaps do carry mass, so this checks something
    torch.testing.assert_close(rec.mass.sum(-1) + rec.remainder, torch.ones_like(rec.remainder))


@pytest.mark.parametrize("padded", [False, True], ids=["single", "left_padded"])
def test_chunking_does_not_change_the_result(family_model, prompts, padded):
    family, model = family_model
    if padded:
        (ids, mask), pads = _padded_batch(prompts), [0, PAD]
    else:
        ids, mask, pads = prompts[:1, :LONG], None, [0]
    rows, spans = torch.tensor([ROWS] * len(pads)), _spans(pads)
    whole, _ = _captured(model, ids, mask, rows, spans)
    chunked, _ = _captured(model, ids, mask, rows, spans, chunk_tokens=5)  # some chunks are skipped (causal)
    # same math in another order: only float32 rounding of the (large, peaky) logits may differ
    torch.testing.assert_close(chunked.mass, whole.mass, atol=2e-6, rtol=0)


def test_static_cache_prefill_matches_eager(prompts):
    """sdpa gets no mask and more keys than queries here (is_causal, upper-left): the rule capture mirrors."""
    from transformers import StaticCache

    model = build_model("llama")
    ids, rows, spans = prompts[:1, :LONG], torch.tensor([ROWS]), _spans([0])
    expected = _eager_mass(model, ids, None, rows, spans)
    rec, _ = _captured(model, ids, None, rows, spans, cache=StaticCache(config=model.config, max_cache_len=40))
    torch.testing.assert_close(rec.mass, expected, atol=TOL, rtol=0)


def test_family_without_attention_raises_before_any_forward():
    """Mamba has no attention in any transformers version: capture refuses it and leaves the model as it was."""
    model = build_mamba()
    before = model.config._attn_implementation
    with pytest.raises(CaptureError, match=r"'mamba'.*set attention.capture: false in the config"):
        AttentionCapture.attach(model)
    assert model.config._attn_implementation == before


def test_falcon_is_captured_exactly_where_this_transformers_routes_it(prompts):
    """Falcon went through the AttentionInterface in later 5.x releases only: the installed version is asked
    (``calls_attention_interface``), and capture either matches eager weights or refuses before any forward."""
    model = build_falcon()
    if not calls_attention_interface(build_falcon):
        before = model.config._attn_implementation
        with pytest.raises(CaptureError, match=r"'falcon'.*set attention.capture: false in the config"):
            AttentionCapture.attach(model)
        assert model.config._attn_implementation == before
        return
    ids, rows, spans = prompts[:1, :LONG], torch.tensor([ROWS]), _spans([0])
    expected = _eager_mass(model, ids, None, rows, spans)
    model.set_attn_implementation("sdpa")
    rec, _ = _captured(model, ids, None, rows, spans)
    torch.testing.assert_close(rec.mass, expected, atol=TOL, rtol=0)


def test_sdpa_inner_refused_where_the_family_needs_eager():
    with pytest.raises(CaptureError, match="gemma2.*inner='eager'"):
        AttentionCapture.attach(build_model("gemma2"), "sdpa")


def test_one_forward_per_record_and_nothing_recorded_outside(prompts):
    model = build_model("llama")
    ids = prompts[:1, :LONG]
    capture = AttentionCapture.attach(model)
    try:
        with torch.no_grad():
            with capture.record(torch.tensor([[LONG - 1]]), _spans([0])) as rec:
                model(ids)
            before = rec.mass.clone()
            model(ids[:, :10])  # outside the block: must not touch rec
            assert torch.equal(rec.mass, before)
            with pytest.raises(CaptureError, match="one forward"):
                with capture.record(torch.tensor([[LONG - 1]]), _spans([0])):
                    model(ids)
                    model(ids)
            with pytest.raises(CaptureError, match="do not fit"):
                with capture.record(torch.tensor([[LONG]]), _spans([0])):
                    model(ids)
    finally:
        capture.detach()
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("window", [None, 3])
def test_flash_position_rules_match_transformers_masks(window):
    """The flash rule (2-D padding + lower-right causal + window) against transformers' own 4-D mask builder."""
    from transformers.masking_utils import (
        causal_mask_function,
        sdpa_mask,
        sliding_window_causal_mask_function,
    )

    q_len, k_len, kv_offset = 3, 9, 4  # a chunked prefill on a cache, keys starting at absolute position 4
    padding = torch.ones(2, kv_offset + k_len, dtype=torch.bool)
    padding[1, :6] = False
    rule = causal_mask_function if window is None else sliding_window_causal_mask_function(window)
    full = sdpa_mask(
        batch_size=2, q_length=q_len, kv_length=k_len, q_offset=kv_offset + k_len - q_len, kv_offset=kv_offset,
        mask_function=rule, attention_mask=padding, allow_is_causal_skip=False,
    )  # fmt: skip
    rows = torch.tensor([[0, 2], [1, 2]])
    flash = mask_bias("flash", padding[:, kv_offset:], rows, q_len, k_len, 1, sliding_window=window)
    sdpa = mask_bias("sdpa", full, rows, q_len, k_len, 1)
    assert torch.equal(flash(0, k_len), sdpa(0, k_len))
    assert bool(torch.isinf(sdpa(0, k_len)).any()) and bool((sdpa(0, k_len) == 0).any())

    # the same masses when chunks are skipped or left unmasked from the row range alone
    query, key = torch.randn(2, 2, 2, 4), torch.randn(2, 2, k_len, 4)  # [B, H, Q, D], [B, Hkv, Lk, D]
    bounds = torch.tensor([[[0, 3], [3, 9]], [[2, 5], [5, 8]]])
    skipping = mask_bias("flash", None, rows, q_len, k_len, 1, sliding_window=window, row_span=(0, 2))
    plain = mask_bias("flash", None, rows, q_len, k_len, 1, sliding_window=window)
    expected = region_mass(query, key, bounds, 0.5, plain, chunk_tokens=k_len)
    torch.testing.assert_close(region_mass(query, key, bounds, 0.5, skipping, chunk_tokens=2), expected)


def test_region_mass_handles_gqa_softcap_and_sinks_by_hand():
    """Hand-built case: softmax over 4 keys with a sink logit, two query heads sharing one key head."""
    generator = torch.Generator().manual_seed(0)
    query = torch.randn(1, 2, 1, 8, generator=generator)  # [B, H, Q, D]
    key = torch.randn(1, 1, 4, 8, generator=generator)  # [B, Hkv, Lk, D]
    sinks = torch.tensor([0.5, -1.0])
    logits = torch.tanh((query @ key.transpose(-1, -2)) * 0.3 / 2.0) * 2.0  # [1, 2, 1, 4]
    with_sink = torch.cat([logits, sinks.view(1, 2, 1, 1)], -1).softmax(-1)[..., :4]
    expected = torch.stack([with_sink[..., :1].sum(-1), with_sink[..., 1:4].sum(-1)], -1)
    bounds = torch.tensor([[[0, 1], [1, 4]]])
    got = region_mass(query, key, bounds, 0.3, lambda s, e: None, softcap=2.0, sinks=sinks, chunk_tokens=3)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_window_is_shorter_than_the_prompts():
    assert WINDOW < SHORT  # else the sliding-window paths would not be exercised

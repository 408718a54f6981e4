"""Head masking (evalkit/attention/heads.py) on tiny random-init models: masking head h equals the model with
that head's output removed by hand (its columns of the output projection zeroed), every other head untouched."""

from __future__ import annotations

import copy

import pytest
import torch

from capture_fixtures import VOCAB, build_model
from evalkit.attention.heads import attach_head_mask, attention_outputs, head_grid, random_heads
from evalkit.errors import ConfigError

FAMILIES = ("llama", "gpt2", "gpt_neox", "gemma3")  # o_proj, Conv1D c_proj, dense; GQA and sliding layers
LAYER, HEAD = 1, 2


def _projection_inputs(model, ids) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Logits and each layer's input to its attention output projection ([1, tokens, heads * head_dim])."""
    seen: list[torch.Tensor] = []
    hooks = [p.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
             for p in attention_outputs(model)]
    try:
        with torch.no_grad():
            logits = model(ids).logits
    finally:
        for hook in hooks:
            hook.remove()
    return logits, seen


def _without_head(model, layer: int, head: int):
    """A copy of ``model`` whose output projection ignores ``head`` of ``layer`` (its input columns zeroed)."""
    removed = copy.deepcopy(model)
    projection = attention_outputs(removed)[layer]
    width = projection.weight.shape[0] if type(projection).__name__ == "Conv1D" else projection.weight.shape[1]
    head_dim = width // removed.config.num_attention_heads
    cols = slice(head * head_dim, (head + 1) * head_dim)
    with torch.no_grad():
        if type(projection).__name__ == "Conv1D":  # GPT-2: weight is [in, out]
            projection.weight[cols, :] = 0
        else:  # nn.Linear: weight is [out, in]
            projection.weight[:, cols] = 0
    return removed


@pytest.mark.parametrize("family", FAMILIES)
def test_masking_a_head_equals_removing_its_output_and_leaves_the_others(family):
    model = build_model(family)
    ids = torch.randint(3, VOCAB, (1, 12), generator=torch.Generator().manual_seed(1))
    base_logits, base_inputs = _projection_inputs(model, ids)
    mask = attach_head_mask(model, heads=[[LAYER, HEAD]])
    try:
        masked_logits, masked_inputs = _projection_inputs(model, ids)
    finally:
        mask.detach()
    expected, _ = _projection_inputs(_without_head(model, LAYER, HEAD), ids)
    torch.testing.assert_close(masked_logits, expected, rtol=0, atol=1e-5)
    assert not torch.allclose(masked_logits, base_logits, atol=1e-3)  # the head mattered
    # upstream of the masked layer nothing changes; at it, only the head's own slice is silenced
    torch.testing.assert_close(masked_inputs[0], base_inputs[0], rtol=0, atol=0)
    head_dim = base_inputs[LAYER].shape[-1] // model.config.num_attention_heads
    heads_of = lambda x: x.view(*x.shape[:-1], -1, head_dim)  # [1, tokens, heads, head_dim]
    assert torch.count_nonzero(heads_of(masked_inputs[LAYER])[..., HEAD, :]) == 0
    others = [h for h in range(model.config.num_attention_heads) if h != HEAD]
    torch.testing.assert_close(heads_of(masked_inputs[LAYER])[..., others, :],
                               heads_of(base_inputs[LAYER])[..., others, :], rtol=0, atol=0)
    # detached: the model computes exactly as before
    again, _ = _projection_inputs(model, ids)
    assert torch.equal(again, base_logits)


def test_random_heads_are_seeded_distinct_and_inside_the_model():
    model = build_model("llama")
    layers, heads = head_grid(model)
    assert (layers, heads) == (2, 4)
    first = random_heads(layers, heads, 3, seed=5)
    assert first == random_heads(layers, heads, 3, seed=5) and first != random_heads(layers, heads, 3, seed=6)
    assert len(set(first)) == 3 and all(0 <= a < layers and 0 <= b < heads for a, b in first)
    mask = attach_head_mask(model, random_k=3, seed=5)
    assert mask.heads == tuple(first) and len(mask.handles) == len({a for a, _ in first})
    mask.detach()
    with pytest.raises(ConfigError, match="random_k 9 is above this model's 8 heads"):
        attach_head_mask(model, random_k=9)


def test_a_head_the_model_lacks_is_refused_naming_the_range():
    with pytest.raises(ConfigError, match=r"heads \[\(2, 0\)\] are not in this model \(layers 0-1, heads 0-3\)"):
        attach_head_mask(build_model("llama"), heads=[[2, 0]])

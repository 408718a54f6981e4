"""An independent recomputation of the last prompt row's attention, to check what evalkit's capture stored.

Shares no code with ``evalkit/attention/``: forward pre-hooks on each attention layer take its input hidden
states and the position embeddings the model hands it, and the layer's own ``q_proj`` / ``k_proj`` (and
``q_norm`` / ``k_norm`` where the family has them) give the last position's query and every position's key.
Rotary, the family's scaling, grouped key/value heads, the sliding window of sliding layers and the logit
softcap are applied here from the model's config; the softmax is taken over keys in chunks (an online max
and denominator over the chunks, then the probabilities chunk by chunk) in float64.

    probs = last_row_probabilities(model, input_ids, chunk_tokens=2048)   # [layers, heads, L] float64
    mass = region_masses(probs, spans)                                    # [layers, heads, R]
    largest_mass_difference(probs, trial_attention)                       # max |recomputed - stored|, row 0

Memory beyond the model's own forward: the ``[heads, L]`` logits of one layer and one chunk of keys at a time,
so 32k keys x all heads stays in a few MB; the result keeps ``[layers, heads, L]`` float64.
Families: llama, mistral, qwen2, qwen3, gemma2, gemma3 (text). Batch 1, no padding, causal attention.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# model_type -> scaled by query_pre_attn_scalar (Gemma) or by head_dim (the rest)
FAMILIES = {"llama": "head_dim", "mistral": "head_dim", "qwen2": "head_dim", "qwen3": "head_dim",
            "gemma2": "query_pre_attn_scalar", "gemma3_text": "query_pre_attn_scalar",
            "gemma3": "query_pre_attn_scalar"}  # fmt: skip


@dataclass(frozen=True)
class LayerRule:
    """What one layer's attention logits are, read from the model config (not from the attention module)."""

    heads: int
    kv_heads: int
    head_dim: int
    scaling: float
    window: int | None  # sliding layers: the last row sees keys j > L - 1 - window
    softcap: float | None  # logits become tanh(x / softcap) * softcap (Gemma 2)


def layer_rules(config: Any) -> list[LayerRule]:
    """One ``LayerRule`` per layer of a text config; ValueError for a family this check does not model."""
    family = getattr(config, "model_type", "?")
    if family not in FAMILIES:
        raise ValueError(f"attention recheck: model family '{family}' is not one of {', '.join(sorted(FAMILIES))}")
    if getattr(config, "use_bidirectional_attention", False):
        raise ValueError(f"attention recheck: {family} with use_bidirectional_attention is not causal")
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    scale_by = config.query_pre_attn_scalar if FAMILIES[family] == "query_pre_attn_scalar" else head_dim
    types = getattr(config, "layer_types", None)
    rules = []
    for layer in range(config.num_hidden_layers):
        if types:  # Gemma, Qwen: per layer; a "full_attention" layer sees every key
            window = config.sliding_window if types[layer] == "sliding_attention" else None
        else:  # Mistral: one window for every layer; Llama has none
            window = getattr(config, "sliding_window", None)
        rules.append(LayerRule(config.num_attention_heads, config.num_key_value_heads, head_dim,
                               float(scale_by) ** -0.5, window, getattr(config, "attn_logit_softcapping", None)))
    return rules


def _rotate(x, cos, sin):
    """Rotary embedding as the llama family applies it: halves swapped, ``x * cos + rotate_half(x) * sin``."""
    import torch

    half = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., half:], x[..., :half]), dim=-1) * sin


def _normed(module: Any, name: str, x):
    norm = getattr(module, name, None)
    return x if norm is None else norm(x)


def layer_last_row(module: Any, rule: LayerRule, hidden, cos, sin, chunk_tokens: int):
    """Probabilities ``[heads, L]`` float64 of the last position's query over every key of one layer.

    ``hidden [1, L, hidden]`` is the layer's attention input, ``cos``/``sin [1, L, head_dim]`` its position
    embeddings; keys are projected, normed and rotated ``chunk_tokens`` at a time.
    """
    import torch

    if cos.shape[-1] != rule.head_dim:  # partial rotary (Phi, GPT-NeoX) is another rule
        raise ValueError(f"attention recheck: rotary width {cos.shape[-1]} is not head_dim {rule.head_dim}")
    length = hidden.shape[1]
    group = rule.heads // rule.kv_heads
    query = _normed(module, "q_norm", module.q_proj(hidden[0, -1:]).view(1, rule.heads, rule.head_dim))
    query = _rotate(query, cos[0, -1:, None, :], sin[0, -1:, None, :])[0].double()  # [H, D]
    first = 0 if rule.window is None else max(0, length - rule.window)  # keys before it are outside the window
    logits = torch.full((rule.heads, length), float("-inf"), dtype=torch.float64)  # [H, L], masked keys -inf
    top = torch.full((rule.heads,), float("-inf"), dtype=torch.float64)
    denominator = torch.zeros(rule.heads, dtype=torch.float64)
    for start in range(first, length, chunk_tokens):
        end = min(start + chunk_tokens, length)
        key = _normed(module, "k_norm", module.k_proj(hidden[0, start:end]).view(end - start, rule.kv_heads, -1))
        key = _rotate(key, cos[0, start:end, None, :], sin[0, start:end, None, :]).double()  # [C, Hkv, D]
        key = key.repeat_interleave(group, dim=1)  # [C, H, D]: query head h reads key head h // group
        scores = torch.einsum("hd,chd->hc", query, key) * rule.scaling  # [H, C]
        if rule.softcap is not None:
            scores = torch.tanh(scores / rule.softcap) * rule.softcap
        logits[:, start:end] = scores
        # online softmax: rescale the running denominator whenever a chunk raises the max
        new_top = torch.maximum(top, scores.amax(-1))
        denominator = denominator * torch.exp(top - new_top) + torch.exp(scores - new_top[:, None]).sum(-1)
        top = new_top
    probs = torch.zeros_like(logits)
    for start in range(first, length, chunk_tokens):  # second pass: probabilities chunk by chunk
        end = min(start + chunk_tokens, length)
        probs[:, start:end] = torch.exp(logits[:, start:end] - top[:, None]) / denominator[:, None]
    return probs


def attention_layers(model: Any) -> list[Any]:
    """The text model's attention modules in layer order (those with ``q_proj``, ``k_proj`` and ``layer_idx``)."""
    text_config = model.config.get_text_config()
    found = {m.layer_idx: m for m in model.modules()
             if hasattr(m, "q_proj") and hasattr(m, "k_proj") and isinstance(getattr(m, "layer_idx", None), int)
             and getattr(m, "config", None) is text_config}  # fmt: skip
    if sorted(found) != list(range(text_config.num_hidden_layers)):
        raise ValueError(f"attention recheck: found attention layers {sorted(found)}, expected "
                         f"0-{text_config.num_hidden_layers - 1} (a family without q_proj / k_proj?)")
    return [found[layer] for layer in range(text_config.num_hidden_layers)]


def last_row_probabilities(model: Any, input_ids: Sequence[int], *, chunk_tokens: int = 2048) -> np.ndarray:
    """``[layers, heads, L]`` float64: the attention probabilities of the last of ``input_ids`` on every key.

    One forward of the base model (no LM head: 32k x vocab logits are not needed); each attention layer's
    pre-hook computes its row from the inputs it receives, so nothing of size ``L x L`` is ever held here.
    """
    import torch

    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
    rules = layer_rules(model.config.get_text_config())
    rows: dict[int, Any] = {}

    def hook_for(layer: int):
        def before(module, args, kwargs):
            hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            cos, sin = kwargs["position_embeddings"] if "position_embeddings" in kwargs else args[1]
            rows[layer] = layer_last_row(module, rules[layer], hidden, cos, sin, chunk_tokens)
        return before

    hooks = [module.register_forward_pre_hook(hook_for(layer), with_kwargs=True)
             for layer, module in enumerate(attention_layers(model))]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            model.base_model(input_ids=torch.tensor([list(input_ids)], device=device), use_cache=False)
    finally:
        for hook in hooks:
            hook.remove()
    return torch.stack([rows[layer] for layer in range(len(rules))]).cpu().numpy()


def region_masses(probs: np.ndarray, spans: np.ndarray) -> np.ndarray:
    """``probs [layers, heads, L]`` summed over each half-open key span of ``spans [R, 2]``: ``[layers, heads, R]``.

    Keys past ``L`` (the ``generated`` region of decode rows) hold nothing for the last prompt row.
    """
    length = probs.shape[-1]
    cumulative = np.concatenate([np.zeros(probs.shape[:-1] + (1,)), np.cumsum(probs, axis=-1)], axis=-1)
    starts, ends = np.clip(spans[:, 0], 0, length), np.clip(spans[:, 1], 0, length)
    return cumulative[..., ends] - cumulative[..., starts]


def largest_mass_difference(probs: np.ndarray, attention: Any) -> float:
    """Max over layers, heads and regions of |recomputed - stored| for row 0 (the last prompt token) of a
    trial's ``TrialAttention``; ``inf`` where a stored mass is NaN or the shapes disagree."""
    stored = np.asarray(attention.mass, dtype=np.float64)[:, :, 0, :]  # [layers, heads, R]
    recomputed = region_masses(probs, np.asarray(attention.spans))
    if stored.shape != recomputed.shape:
        return float("inf")
    return float(np.nan_to_num(np.abs(recomputed - stored), nan=np.inf).max())

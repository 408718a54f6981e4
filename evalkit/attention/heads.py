"""The ``mask_heads`` arm inside the model: zero the output of chosen attention heads.

Wu et al. (2024, Retrieval Head Mechanistically Explains Long-Context Factuality) find a few heads do the
copying from context: masking the top retrieval heads breaks needle retrieval, masking as many random heads
does not. A head's output is its slice ``[h * head_dim, (h + 1) * head_dim)`` of the input to the attention
block's output projection (``o_proj``, GPT-2's ``c_proj``, GPT-NeoX's ``dense``); a forward pre-hook zeroes
that slice, so the projection (and everything after it) sees the head as silent, while every other head's
slice passes unchanged, bit for bit. The attention kernel itself is untouched.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalkit.errors import ConfigError

# (attention module's output projection child) per family layout, tried in order
_OUTPUT_PROJECTIONS = ("o_proj", "c_proj", "dense")


def attention_outputs(model: Any) -> list[Any]:
    """Each layer's attention output projection, in layer order (ConfigError for a layout not known here)."""
    found = []
    for name, module in model.named_modules():
        if not type(module).__name__.endswith("Attention"):
            continue
        child = next((getattr(module, p) for p in _OUTPUT_PROJECTIONS if hasattr(module, p)), None)
        if child is not None:
            found.append(child)
    if not found:
        raise ConfigError(f"mitigations: mask_heads: no attention output projection found in "
                          f"{type(model).__name__}; this family is not supported, drop the mask_heads arm")
    return found


def head_grid(model: Any) -> tuple[int, int]:
    """(layers, query heads per layer) of ``model``."""
    return len(attention_outputs(model)), int(model.config.num_attention_heads)


def random_heads(layers: int, heads: int, k: int, seed: int) -> list[tuple[int, int]]:
    """``k`` distinct (layer, head) pairs drawn with ``seed`` (sorted); ConfigError when the model has fewer."""
    every = [(layer, head) for layer in range(layers) for head in range(heads)]
    if k > len(every):
        raise ConfigError(f"mitigations: mask_heads: random_k {k} is above this model's {len(every)} heads; "
                          f"use random_k <= {len(every)}")
    return sorted(random.Random(f"evalkit.mask_heads:{seed}").sample(every, k))


@dataclass
class HeadMask:
    """Forward pre-hooks zeroing ``heads``' slices of the attention output projections; ``detach`` removes them."""

    heads: tuple[tuple[int, int], ...]
    handles: list[Any] = field(default_factory=list)

    def detach(self) -> None:
        """Remove the hooks: the model computes as before."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()


def attach_head_mask(model: Any, heads: Sequence[Sequence[int]] = (), random_k: int = 0, seed: int = 0) -> HeadMask:
    """Zero ``heads`` (or ``random_k`` seeded random heads) of ``model``; ConfigError for a head it lacks."""
    projections = attention_outputs(model)
    layers, per_layer = len(projections), int(model.config.num_attention_heads)
    chosen = random_heads(layers, per_layer, random_k, seed) if random_k else [(int(a), int(b)) for a, b in heads]
    bad = [pair for pair in chosen if not (0 <= pair[0] < layers and 0 <= pair[1] < per_layer)]
    if bad:
        raise ConfigError(f"mitigations: mask_heads: heads {bad} are not in this model (layers 0-{layers - 1}, "
                          f"heads 0-{per_layer - 1}); fix the [layer, head] pairs")
    mask = HeadMask(tuple(chosen))
    for layer in sorted({pair[0] for pair in chosen}):
        silent = sorted(head for lay, head in chosen if lay == layer)
        mask.handles.append(projections[layer].register_forward_pre_hook(_zero_heads(silent, per_layer)))
    return mask


def _zero_heads(silent: list[int], per_layer: int):
    def hook(module: Any, args: tuple[Any, ...]):
        x = args[0]  # [batch, tokens, heads * head_dim]: the heads' outputs side by side
        head_dim = x.shape[-1] // per_layer
        x = x.clone()  # the caller's tensor stays as it was
        for head in silent:
            x[..., head * head_dim:(head + 1) * head_dim] = 0
        return (x, *args[1:])

    return hook

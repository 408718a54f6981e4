"""A first batch size for ``batch_size: auto``: free memory over a per-prompt estimate of a transformers model.

Rough on purpose: ``run/schedule.run_in_batches`` halves a batch that runs out of memory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AUTO_MAX_BATCH", "auto_batch_size"]

AUTO_MAX_BATCH = 256  # auto never starts above this many prompts per forward
_MEMORY_SHARE = 0.8  # share of free memory auto plans to use (the estimate is rough)


def auto_batch_size(model: Any, device: str, context_length: int, trials: int) -> int:
    """A first batch size from free memory and a per-prompt estimate (KV cache + activations).

    Rough on purpose: an out-of-memory error halves it (``run_in_batches``).
    """
    free = _free_memory_bytes(device)
    config = model.config.get_text_config()
    layers = getattr(config, "num_hidden_layers", 1)
    hidden = getattr(config, "hidden_size", 1024)
    heads = getattr(config, "num_attention_heads", 1)
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    inter = getattr(config, "intermediate_size", None) or 4 * hidden
    item = next(model.parameters()).element_size()
    kv_bytes = 2 * layers * kv_heads * head_dim * item * context_length
    # the widest activation of one layer (MLP up + gate + input) plus residual copies, all [L, width]
    activation_bytes = (3 * inter + 4 * hidden) * item * context_length
    per_prompt = kv_bytes + activation_bytes
    return max(1, min(trials, AUTO_MAX_BATCH, int(free * _MEMORY_SHARE // per_prompt)))


def _free_memory_bytes(device: str) -> int:
    import torch

    if device.startswith("cuda"):
        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:  # Linux: what the kernel could give without swapping
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 1024**3  # unknown: assume 4 GiB

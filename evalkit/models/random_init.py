"""The untrained control (``init: random``): a model entry's architecture built from its config with random weights.

The config, tokenizer, dtype and attention kernel are the ones the trained model loads with (``hf.py`` reads them
by the ordinary path: built-in alias, Hub id, local folder or GGUF); only the weights differ. They are the family's
own initialisation (``AutoModelForCausalLM.from_config``, the model's ``_init_weights``), drawn on the CPU from the
entry's ``init_seed`` alone and then moved to the device: one seed gives the same weights on every run, whatever
ran before, and the global random state is left as it was (nothing else in the run draws differently).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from evalkit.config.entries import DEVICE_MAP_STRATEGIES, ModelConfig
from evalkit.errors import ModelLoadError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

# what from_config raises for an unknown architecture, a kernel the family lacks, a missing package or no memory
_BUILD_ERRORS = (ValueError, ImportError, KeyError, RuntimeError, OSError)


def random_model(cfg: ModelConfig, config: PretrainedConfig, device: str | None) -> PreTrainedModel:
    """The model of ``config`` with weights drawn from ``cfg.init_seed``, in ``cfg.dtype`` with its
    ``attn_implementation``, on ``device`` (or spread by ``cfg.device_map``); not yet in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    # "auto" is the config's own dtype, as from_pretrained reads it
    dtype: dict[str, Any] = {} if cfg.dtype == "auto" else {"dtype": getattr(torch, cfg.dtype)}
    try:
        # fork_rng restores the CPU generator on exit; only it is seeded (torch.manual_seed would reseed CUDA too)
        with torch.random.fork_rng(devices=[]), torch.device("cpu"):
            torch.default_generator.manual_seed(cfg.init_seed)
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=cfg.trust_remote_code,
                                                     attn_implementation=cfg.attn_implementation, **dtype)
        return _placed(model, cfg.device_map if cfg.device_map is not None else device or "cpu")
    except _BUILD_ERRORS as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
        raise ModelLoadError(
            f"model {cfg.name!r}: building it with random weights (init: random) failed ({reason}); check the "
            "entry's dtype, device, device_map and attn_implementation, or set init: pretrained"
        ) from exc


def _placed(model: PreTrainedModel, where: str) -> PreTrainedModel:
    """``model`` on one device, or spread over the visible devices by an accelerate strategy (``auto``, ...)."""
    if where not in DEVICE_MAP_STRATEGIES:
        return model.to(where)
    from accelerate import dispatch_model, infer_auto_device_map
    from accelerate.utils import get_balanced_memory

    # what from_pretrained does with the same strategy: whole decoder layers per device, balanced unless sequential
    no_split = list(getattr(model, "_no_split_modules", None) or [])
    memory = None if where == "sequential" else get_balanced_memory(
        model, no_split_module_classes=no_split, low_zero=where == "balanced_low_0")
    device_map = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
    return dispatch_model(model, device_map=device_map)

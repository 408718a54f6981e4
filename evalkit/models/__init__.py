"""Models: built-in aliases, loading (``hf.py``) and the one-forward backend (``backend.py``, ``draft.py``).

Importing this package is cheap: torch and transformers load on first use.
"""

from __future__ import annotations

from evalkit.models.backend import GoldScore, PrefillState, greedy_decode, prefill, run_prompt, score_gold
from evalkit.models.builtin import CachedBuiltin, cache_root, ensure_builtin
from evalkit.models.hf import (
    LoadedModel,
    ModelInfo,
    default_stop_token_ids,
    describe_model,
    load_from_objects,
    load_model,
    load_model_config,
    load_tokenizer,
    max_context_tokens_of,
    resolve_device,
)
from evalkit.models.registry import BUILTIN_MODELS, BuiltinModel, get_builtin, list_builtin_models

__all__ = [
    "BUILTIN_MODELS",
    "BuiltinModel",
    "CachedBuiltin",
    "GoldScore",
    "LoadedModel",
    "ModelInfo",
    "PrefillState",
    "cache_root",
    "default_stop_token_ids",
    "describe_model",
    "ensure_builtin",
    "get_builtin",
    "greedy_decode",
    "list_builtin_models",
    "load_from_objects",
    "load_model",
    "load_model_config",
    "load_tokenizer",
    "max_context_tokens_of",
    "prefill",
    "resolve_device",
    "run_prompt",
    "score_gold",
]

"""Models: the backend interface, the transformers backend, loading and the one-forward trial path.

    base.py                  Backend protocol, Capabilities, TrialRequest / CaptureRequest / CapturedRows
    backends.py              the backend registry (``backend:`` of a model entry -> class)
    transformers_backend.py  TransformersBackend: one model in process, its state on the instance
    single.py / classic.py   one prompt: the draft path (``draft.py``) and the classic three-step path
    batch.py / prefix.py     several prompts in one forward; a shared prompt prefix kept across trials
    forward.py               forward and cache helpers shared by all of them (a leaf: no package imports)
    hf.py / builtin.py / registry.py / sizing.py   loading, built-in aliases and GGUF files, batch-size estimate
    content_hash.py          the revision of a local folder or file: a hash of its contents
    gguf_check.py            a GGUF file's structure, bounded by its size, checked before conversion

Importing this package is cheap: torch and transformers load on first use.
"""

from __future__ import annotations

from evalkit.models.backends import BACKENDS, DEFAULT_BACKEND, backend_class
from evalkit.models.base import Backend, BackendInfo, Capabilities, CapturedRows, CaptureRequest, TrialRequest
from evalkit.models.builtin import CachedBuiltin, cache_root, ensure_builtin, ensure_gguf
from evalkit.models.content_hash import folder_revision
from evalkit.models.classic import PrefillState, greedy_decode, prefill, score_gold
from evalkit.models.draft import AnswerMemory
from evalkit.models.forward import GoldScore
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
from evalkit.models.single import run_prompt
from evalkit.models.transformers_backend import TransformersBackend

__all__ = [
    "BACKENDS",
    "BUILTIN_MODELS",
    "DEFAULT_BACKEND",
    "AnswerMemory",
    "Backend",
    "BackendInfo",
    "BuiltinModel",
    "CachedBuiltin",
    "Capabilities",
    "CaptureRequest",
    "CapturedRows",
    "GoldScore",
    "LoadedModel",
    "ModelInfo",
    "PrefillState",
    "TransformersBackend",
    "TrialRequest",
    "backend_class",
    "cache_root",
    "default_stop_token_ids",
    "describe_model",
    "ensure_builtin",
    "ensure_gguf",
    "folder_revision",
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

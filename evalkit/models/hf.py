"""Load Hugging Face transformers models: built-in aliases, GGUF files, local folders and Hub ids, one code path.

Every name ends in an ordinary ``from_pretrained(path_or_id, revision=..., dtype=..., device_map=...)``;
a built-in alias or a GGUF file (``name: x.gguf``, or ``gguf_file`` inside a folder or Hub repo) first becomes
its cached converted folder (see ``builtin.py``). A local folder records a content hash as its revision
(``content_hash.py``). Failures raise ``ModelLoadError`` saying what was looked for and how to fix it.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from evalkit.config.schema import ModelConfig
from evalkit.errors import ModelLoadError
from evalkit.models.builtin import cache_root, ensure_builtin, ensure_gguf
from evalkit.models.content_hash import folder_revision
from evalkit.models.pickles import pickle_load_error, quiet_unpickler, refuse_pickle_weights, refused_by_unpickler
from evalkit.models.random_init import random_model
from evalkit.models.registry import BUILTIN_MODELS, builtin_names, get_builtin

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

# config attributes that hold the trained context length, in order of preference
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length", "n_ctx")
_SANE_TOKENIZER_LIMIT = 10_000_000  # tokenizers without a limit report ~1e30
# what from_pretrained raises for a missing repo, no network, an unknown architecture, a missing package,
# or running out of memory; anything else is a bug and keeps its traceback
_LOAD_ERRORS = (OSError, ValueError, ImportError, KeyError, RuntimeError)
HUB_PROBE_TIMEOUT_S = 1.5  # one TCP connect: without network a Hub look-up fails in this time, not after retries
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for the backend: weights in eval mode, tokenizer, and what records need."""

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str  # the entry's label: its name as written (alias, Hub id or path), "(random init, seed N)" added
    revision: str  # Hub commit hash, built-in package+GGUF hash, the requested revision, or "unknown"
    max_context_tokens: int | None  # trained context length; None when the model does not say
    device: str  # device of the input embeddings: where input_ids go ("cpu", "cuda:0", ...)
    dtype: str  # parameter dtype name ("float32", "bfloat16", ...)
    stop_token_ids: tuple[int, ...]  # tokenizer eos + generation_config eos ids (e.g. <|im_end|>)


@dataclass(frozen=True)
class _Source:
    """Where from_pretrained reads a model from."""

    location: str  # local folder or Hub id
    revision: str | None  # passed to from_pretrained (None for local folders)
    recorded_revision: str | None  # known before loading (built-ins, GGUF files, local folders), else None
    kind: str  # "built-in", "gguf", "local" or "hub"
    local_files_only: bool = False  # a Hub id whose files are cached while the Hub cannot be reached


def resolve_device(device: str) -> str:
    """``auto`` -> cuda if available, else mps if available, else cpu; other names are checked."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(
            f"device {device!r}: torch.cuda.is_available() is False (CPU-only torch build or no GPU visible); "
            "use device: cpu or auto"
        )
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps': torch.backends.mps.is_available() is False; use device: cpu or auto")
    return device


def max_context_tokens_of(config: PretrainedConfig, tokenizer: Any = None) -> int | None:
    """The model's trained context length from its config, else a sane ``tokenizer.model_max_length``."""
    text_config = config.get_text_config() if hasattr(config, "get_text_config") else config
    for holder in (text_config, config):
        for key in _CONTEXT_KEYS:
            value = getattr(holder, key, None)
            if isinstance(value, int) and value > 0:
                return value
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 0 < limit < _SANE_TOKENIZER_LIMIT:
        return limit
    return None


def _looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or "\\" in name or os.path.isabs(name)


def _resolve_source(cfg: ModelConfig) -> _Source:
    if cfg.served is not None and cfg.served.tokenizer:
        # a served entry's name is a label; its tokenizer and config (placement, limits) come from here
        cfg = cfg.model_copy(update={"name": cfg.served.tokenizer})
    spec = get_builtin(cfg.name)
    if spec is not None:
        for field in ("revision", "gguf_file"):
            if getattr(cfg, field) is not None:
                raise ModelLoadError(
                    f"model {cfg.name!r} is built in: {field!r} does not apply (the installed {spec.package} "
                    "fixes the weights); remove it"
                )
        cached = ensure_builtin(spec)
        return _Source(str(cached.path), None, cached.revision, "built-in")
    gguf = _gguf_path(cfg)
    if gguf is not None:
        cached = ensure_gguf(gguf)
        return _Source(str(cached.path), None, cached.revision, "gguf")
    path = Path(cfg.name).expanduser()
    if path.exists():
        if not cfg.allow_pickle_weights and cfg.init == "pretrained":  # a random-init control reads no weights
            refuse_pickle_weights(cfg, path)
        # no commit hash here: the content is the revision (a changed weight makes new trials, not mixed ones)
        revision = folder_revision(path, cache_root()) if path.is_dir() else None
        return _Source(str(path), None, revision, "local")
    if _looks_like_path(cfg.name):
        raise ModelLoadError(
            f"model {cfg.name!r}: no such local folder; built-in aliases: {builtin_names()}"
        )
    return _hub_source(cfg)


def _gguf_path(cfg: ModelConfig) -> Path | None:
    """The GGUF file a model entry names (``name: x.gguf``, or ``gguf_file`` in a folder or Hub repo), else None."""
    if cfg.gguf_file is None:
        if not cfg.name.lower().endswith(".gguf"):
            return None
        path = Path(cfg.name).expanduser()
        if not path.is_file():
            raise ModelLoadError(
                f"model {cfg.name!r}: no such GGUF file (a relative path starts where evalkit runs); fix the path"
            )
        return path
    folder = Path(cfg.name).expanduser()
    if folder.is_dir():
        path = folder / cfg.gguf_file
        if not path.is_file():
            found = ", ".join(sorted(p.name for p in folder.glob("*.gguf"))[:5]) or "no .gguf file"
            raise ModelLoadError(
                f"model {cfg.name!r}: gguf_file {cfg.gguf_file!r} is not in that folder (it holds {found}); "
                "fix gguf_file"
            )
        return path
    if _looks_like_path(cfg.name):
        raise ModelLoadError(f"model {cfg.name!r}: no such local folder to read gguf_file {cfg.gguf_file!r} from")
    return _hub_gguf(cfg)


def _hub_gguf(cfg: ModelConfig) -> Path:
    """Download (or find in the Hub cache) ``gguf_file`` of the Hub repo ``name``."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(cfg.name, cfg.gguf_file, revision=cfg.revision,
                                    local_files_only=hub_offline() or not hub_reachable()))  # fmt: skip
    except _LOAD_ERRORS as exc:  # huggingface_hub's errors are OSError/ValueError subclasses
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(
            f"model {cfg.name!r}: gguf_file {cfg.gguf_file!r} could not be fetched from the Hugging Face Hub "
            f"({reason}); check the repo id and file name, network access, or give a local path"
        ) from exc


def hub_offline() -> bool:
    """True when the user switched the Hub off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    import huggingface_hub.constants

    env = (os.environ.get(name, "").strip().lower() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return bool(huggingface_hub.constants.HF_HUB_OFFLINE) or any(value in _TRUE for value in env)


def hub_address() -> tuple[str, int]:
    """(host, port) a Hub request first connects to: the HTTPS proxy if one is set, else ``HF_ENDPOINT``."""
    proxy = next((os.environ[k] for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy") if os.environ.get(k)),
                 None)
    parts = urlsplit(proxy or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return parts.hostname or "huggingface.co", parts.port or (443 if parts.scheme == "https" else 80)


def hub_reachable(timeout_s: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the Hub (or its proxy) within ``timeout_s``."""
    try:
        with socket.create_connection(hub_address(), timeout=timeout_s):
            return True
    except OSError:
        return False


def _hub_cached(cfg: ModelConfig) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(cfg.name, "config.json", revision=cfg.revision), str)
    except ValueError:  # not a valid repo id: from_pretrained says so itself
        return False


def _hub_source(cfg: ModelConfig) -> _Source:
    """A Hub id; without network it fails in about a second (from_pretrained would retry for a minute)."""
    if hub_offline() or hub_reachable():
        return _Source(cfg.name, cfg.revision, None, "hub")
    if _hub_cached(cfg):
        return _Source(cfg.name, cfg.revision, None, "hub", local_files_only=True)
    host, port = hub_address()
    close = difflib.get_close_matches(cfg.name, list(BUILTIN_MODELS), n=1)
    hint = f"did you mean the built-in {close[0]!r}? " if close else ""
    raise ModelLoadError(
        f"model {cfg.name!r}: not a built-in alias ({builtin_names()}) nor a local folder, so it is a Hugging Face "
        f"Hub id, but {host}:{port} cannot be reached (no network?) and it is not in the local cache; {hint}"
        "check the name, or download it where there is network and set HF_HUB_OFFLINE=1"
    )


def _load_error(cfg: ModelConfig, source: _Source, what: str, exc: BaseException) -> ModelLoadError:
    """A one-paragraph error saying what was looked for, why it failed and what to try."""
    reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    if source.kind == "hub":
        rev = f" at revision {cfg.revision!r}" if cfg.revision else ""
        close = difflib.get_close_matches(cfg.name, list(BUILTIN_MODELS), n=1)
        hint = (
            (f"did you mean the built-in {close[0]!r}? " if close else "")
            + f"it is not a built-in alias ({builtin_names()}) nor a local folder, so it was looked up as a "
            f"Hugging Face Hub id{rev}; check the name and 'revision', network access (or HF_HUB_OFFLINE "
            "with a filled cache), and HF_TOKEN for gated models"
        )
        if "safetensors" in reason.lower() and not cfg.allow_pickle_weights:
            hint += "; only safetensors weights load unless the entry sets allow_pickle_weights: true"
        if hub_offline():
            # offline, only the local cache was searched: say how to fill it
            hint += f"; HF_HUB_OFFLINE is set, so fetch it first where there is network: hf download {cfg.name}"
    elif source.kind == "local":
        hint = "the folder should hold config.json, weights and tokenizer files (as written by save_pretrained)"
    elif any(word in reason.lower() for word in ("file", "safetensors", "json", "header", "corrupt", "no such")):
        hint = f"the cached copy {source.location} looks damaged: delete it to convert it again"
    else:  # the cache is fine; the model entry asks for something this machine or model cannot do
        hint = "check the model entry's dtype, device, device_map and attn_implementation"
    if any(word in reason.lower() for word in ("attn", "attention", "sdpa", "flash")):
        hint += f"; attn_implementation={cfg.attn_implementation!r} may be unsupported: try 'eager'"
    return ModelLoadError(f"model {cfg.name!r}: loading the {what} from {source.location!r} failed ({reason}); {hint}")


def _torch_dtype(name: str) -> Any:
    import torch

    return "auto" if name == "auto" else getattr(torch, name)


def _load_weights(cfg: ModelConfig, source: _Source, device: str | None) -> PreTrainedModel:
    from transformers import AutoModelForCausalLM

    try:
        with quiet_unpickler():
            return AutoModelForCausalLM.from_pretrained(
                source.location,
                revision=source.revision,
                dtype=_torch_dtype(cfg.dtype),
                # a single device is given as a device map too, so weights load straight onto it
                device_map=cfg.device_map if cfg.device_map is not None else device,
                trust_remote_code=cfg.trust_remote_code,
                attn_implementation=cfg.attn_implementation,
                # pickled .bin weights can run code when loaded: only with the entry's explicit opt-in
                use_safetensors=None if cfg.allow_pickle_weights else True,
                local_files_only=source.local_files_only,
            )
    except Exception as exc:
        if refused_by_unpickler(exc):  # allow_pickle_weights, and the pickle is not plain tensors
            raise pickle_load_error(cfg, source.location, exc) from None
        if isinstance(exc, _LOAD_ERRORS):
            raise _load_error(cfg, source, "model", exc) from exc
        raise


def _load_tokenizer(cfg: ModelConfig, source: _Source) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=cfg.trust_remote_code,
            local_files_only=source.local_files_only,
        )
    except _LOAD_ERRORS as exc:
        raise _load_error(cfg, source, "tokenizer", exc) from exc


def load_model(cfg: ModelConfig) -> LoadedModel:
    """Load the model and tokenizer a config entry names, in eval mode on the requested device.

    ``init: random`` reads the config the same way and builds the architecture with random weights
    (``random_init.py``); the revision is then the config's.
    """
    source = _resolve_source(cfg)
    device = None if cfg.device_map is not None else resolve_device(cfg.device)
    if cfg.init == "random":
        model = random_model(cfg, _load_config(cfg, source), device)
    else:
        model = _load_weights(cfg, source, device)
    tokenizer = _load_tokenizer(cfg, source)
    revision = source.recorded_revision or getattr(model.config, "_commit_hash", None) or cfg.revision
    logger.info("loaded %s (%s) revision %s", cfg.label, source.kind, revision or "unknown")
    return load_from_objects(model, tokenizer, name=cfg.label, revision=revision or "unknown")


def load_tokenizer(cfg: ModelConfig) -> PreTrainedTokenizerBase:
    """Only the tokenizer a config entry names (no weights), e.g. to check prompts before a run."""
    return _load_tokenizer(cfg, _resolve_source(cfg))


def load_from_objects(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, name: str = "in-memory", revision: str = "unknown"
) -> LoadedModel:
    """Wrap an in-memory model and tokenizer (tests, notebooks); puts the model in eval mode."""
    model.eval()
    embeddings = model.get_input_embeddings()
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        name=name,
        revision=revision,
        max_context_tokens=max_context_tokens_of(model.config, tokenizer),
        device=str(embeddings.weight.device),
        dtype=str(model.dtype).removeprefix("torch."),
        stop_token_ids=default_stop_token_ids(model, tokenizer),
    )


def default_stop_token_ids(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    """Token ids that end greedy decoding: the tokenizer's eos plus the generation config's eos id(s)."""
    ids: list[int] = []
    generation_config = getattr(model, "generation_config", None)
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(generation_config, "eos_token_id", None)):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token_id, int) and token_id not in ids:
                ids.append(token_id)
    return tuple(ids)


@dataclass(frozen=True, eq=False)
class ModelInfo:
    """What checks before a run need to know about a model, from its config alone (no weights)."""

    name: str
    revision: str  # same rules as LoadedModel.revision
    max_context_tokens: int | None
    config: PretrainedConfig


def describe_model(cfg: ModelConfig) -> ModelInfo:
    """Revision and context limit of the model a config entry names, without loading weights."""
    source = _resolve_source(cfg)  # a built-in is converted here if it has no cached copy yet (~20 s, once)
    config = _load_config(cfg, source)
    revision = source.recorded_revision or getattr(config, "_commit_hash", None) or cfg.revision or "unknown"
    return ModelInfo(cfg.name, revision, max_context_tokens_of(config), config)


def load_model_config(cfg: ModelConfig) -> PretrainedConfig:
    """Only the model's HF config (no weights), e.g. to check a context length before loading."""
    return describe_model(cfg).config


def _load_config(cfg: ModelConfig, source: _Source) -> PretrainedConfig:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=cfg.trust_remote_code,
            local_files_only=source.local_files_only,
        )
    except _LOAD_ERRORS as exc:
        raise _load_error(cfg, source, "config", exc) from exc

"""Before any trial runs: does every model load with its attention kernel, and can it be captured?

Which kernel a model loads with (one rule, by construction): while ``attention.capture`` is on,
``attention.inner`` decides (``auto``: sdpa, or eager for families that need it: softcap, sinks) and
``models[*].attn_implementation`` is not used; a model entry that sets it explicitly to something else is
refused. With capture off, ``attn_implementation`` decides. ``check_capture`` returns that choice per model
and the runner loads each model with it.

Each model is built on the ``meta`` device from its config alone (no weights, no memory) with that kernel, and
capture is attached and detached, so an unsupported family (Falcon, Mamba, ...), a family that cannot run the
kernel (Gemma 2 on sdpa) or a missing kernel is refused before the run directory is touched.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.attention.capture import check_capturable
from evalkit.attention.heads import head_grid
from evalkit.attention.trial import attach_capture
from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.errors import CaptureError, ConfigError
from evalkit.models import describe_model


def check_capture(config: EvalConfig, config_path: str | Path) -> dict[str, str]:
    """Raise (ConfigError, CaptureError) naming the config, the model entry and the family if a model cannot load
    with its kernel or cannot be captured; return {model label: the attn_implementation it loads with} (see the module doc)."""
    kernels: dict[str, str] = {}
    for index, model_cfg in enumerate(config.models):
        hf_config = describe_model(model_cfg).config
        if not config.attention.capture:
            kernels[model_cfg.label] = model_cfg.attn_implementation
            _check_loads(hf_config, model_cfg, model_cfg.attn_implementation, config_path, index)
            continue
        wanted = None if config.attention.inner == "auto" else config.attention.inner
        try:
            skeleton = _capture_skeleton(hf_config, model_cfg, wanted, f"{config_path}: attention.inner")
            capture = attach_capture(skeleton, config.attention)
        except CaptureError as err:
            raise CaptureError(f"{config_path}: models[{index}] ({model_cfg.name}): {err}") from None
        capture.detach()
        _check_agrees(model_cfg, capture.inner, config_path, index)  # capture.inner: "auto" resolved per family
        kernels[model_cfg.label] = capture.inner
    return kernels


def _capture_skeleton(hf_config, model_cfg: ModelConfig, kernel: str | None, where: str):
    """The meta-device model for capture with ``kernel``. A family that refuses the kernel because it cannot be
    captured at all (Mamba has no attention, so no sdpa) is a CaptureError, not advice to change the kernel."""
    try:
        return _meta_model(hf_config, model_cfg, kernel, where)
    except ConfigError:
        check_capturable(_meta_model(hf_config, model_cfg, "eager", where))  # eager: every family accepts it
        raise


def model_head_grid(model_cfg: ModelConfig) -> tuple[int, int] | None:
    """(attention layers, query heads per layer) of the model an entry names, from its config alone (a meta-device
    model: no weights); None for a family that cannot be built so (remote or exotic code: the load decides)."""
    hf_config = describe_model(model_cfg).config
    try:
        return head_grid(_meta_model(hf_config, model_cfg, None, f"models: {model_cfg.name}"))
    except Exception:  # noqa: BLE001 - not this check's business, as in _check_loads
        return None


def _check_loads(hf_config, model_cfg: ModelConfig, kernel: str, config_path: str | Path, index: int) -> None:
    """Capture off: refuse an attn_implementation the family refuses (Gemma 2 on sdpa), before any weight loads.

    Only transformers' own refusal counts; a family that cannot even be built on the meta device is left to the
    load (that is not a kernel question)."""
    try:
        _meta_model(hf_config, model_cfg, kernel, f"{config_path}: models[{index}].attn_implementation")
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - meta construction of remote or exotic code: not this check's business
        return


def _check_agrees(model_cfg: ModelConfig, kernel: str, config_path: str | Path, index: int) -> None:
    """Refuse an explicit ``attn_implementation`` that the capture kernel overrides (it would be ignored)."""
    if "attn_implementation" in model_cfg.model_fields_set and model_cfg.attn_implementation != kernel:
        raise ConfigError(
            f"{config_path}: models[{index}].attn_implementation: {model_cfg.attn_implementation!r} conflicts with "
            f"attention.inner {kernel!r} ({model_cfg.name}); while attention.capture is on attention.inner decides "
            f"the kernel: remove attn_implementation or set it to {kernel!r}"
        )


def _meta_model(hf_config, model_cfg: ModelConfig, kernel: str | None, where: str):
    """The model class of ``hf_config`` instantiated on the meta device (shapes only) with ``kernel``; a kernel
    transformers refuses for this family or machine is a ConfigError at ``where`` (the field that chose it)."""
    import torch
    from transformers import AutoModelForCausalLM

    if kernel == "sdpa" and getattr(hf_config.get_text_config(), "attn_logit_softcapping", None) is not None:
        # asked here, not of transformers: releases up to at least 5.17 accept it and run sdpa without the softcap
        raise ConfigError(f"{where}: {model_cfg.name} cannot load with 'sdpa' (its attention applies a logit "
                          "softcap, which sdpa does not compute); use 'eager'")
    try:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(hf_config, trust_remote_code=model_cfg.trust_remote_code,
                                                    **({"attn_implementation": kernel} if kernel else {}))
    except (ValueError, ImportError) as err:  # transformers refuses a kernel the family or machine lacks
        reason = " ".join(str(err).split())[:200]
        if not any(word in reason.lower() for word in ("attention", "attn", "sdpa", "flash")):
            raise  # not about the kernel: the load reports it
        raise ConfigError(f"{where}: {model_cfg.name} cannot load with {kernel!r} ({reason}); use 'eager'") from None

"""Before anything runs: does every model entry's backend exist, and can it do what the config asks?

Checked from the backend classes' ``Capabilities`` (nothing is loaded), and for a served entry what can be
checked without sending a prompt (its key variable, its ``serve`` program, its health route), by ``evalkit
validate`` and ``evalkit run`` before the run directory exists. Each refusal is one line naming the config
file, the field, the backend and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from evalkit.config.mitigations import IN_MODEL_ARMS
from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError, EvalkitError
from evalkit.models.backends import backend_class
from evalkit.models.base import Backend, Capabilities
from evalkit.models.served.preflight import check_served

__all__ = ["check_backends"]


def check_backends(
    config: EvalConfig, config_path: str | Path, known: Mapping[str, type[Backend]] | None = None
) -> None:
    """Raise ConfigError for an unknown ``models[i].backend`` or an option its backend lacks.

    ``known`` (default: ``models.backends.BACKENDS``) is the registry to look names up in.
    """
    for index, model_cfg in enumerate(config.models):
        where = f"{config_path}: models[{index}].backend"
        try:
            cls = backend_class(model_cfg.backend, known)
        except EvalkitError as err:
            raise ConfigError(f"{where}: {err}") from None
        problem = _missing_capability(config, cls.capabilities)
        if problem is not None:
            field, what, fix = problem
            raise ConfigError(
                f"{config_path}: {field}: backend {model_cfg.backend!r} (models[{index}], {model_cfg.name}) "
                f"{what}; {fix}"
            )
        check_served(model_cfg, f"{config_path}: models[{index}]")  # nothing to check for a local model


def _missing_capability(config: EvalConfig, caps: Capabilities) -> tuple[str, str, str] | None:
    """(field, what the backend lacks, how to fix it) for the first option the backend cannot serve."""
    if not caps.token_prompts:
        return "models", "does not take token-id prompts (exact needle placement needs them)", "use another backend"
    # no gold log-probs is allowed: such a backend records gold_logprob null with the reason, never a number
    if config.attention.capture and not caps.attention_capture:
        return "attention.capture", "cannot capture attention", "set attention.capture: false"
    # arms acting inside the model need the hooks capture uses (only an in-process backend has them)
    inside = [arm.label for arm in config.mitigations if arm.arm in IN_MODEL_ARMS]
    if inside and not caps.attention_capture:
        return ("mitigations", f"cannot run arms inside the model ({', '.join(inside)}: it cannot capture attention)",
                "use backend: transformers for this model, or drop those arms")
    # reuse_prefix is on by default: only an explicit request is refused (by default it is just not used)
    if config.reuse_prefix and "reuse_prefix" in config.model_fields_set and not caps.prefix_reuse:
        return "reuse_prefix", "cannot reuse a prompt prefix", "set reuse_prefix: false"
    if config.batch_size != 1 and not caps.batching:
        return "batch_size", "cannot run prompts in batches", "set batch_size: 1"
    return None

"""Checks and preparation done once, before any trial runs.

Everything here fails fast with an error naming the config file and field, so a bad
request never costs a partly written run directory.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from evalkit.config.schema import EvalConfig, ModelConfig, config_hash
from evalkit.errors import ConfigError, EvalkitError
from evalkit.types import NeedleInstance, PromptParts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedTask:
    """A loaded task with its haystack source, ready to make prompt parts per trial seed."""

    spec: Any  # evalkit.tasks.TaskSpec
    haystack: Any  # evalkit.tasks.haystacks.HaystackSource

    def parts_for(self, seed: int, model_cfg: ModelConfig) -> tuple[PromptParts, NeedleInstance]:
        """The needle drawn from ``seed`` and the prompt pieces for ``model_cfg``."""
        from evalkit.tasks import instantiate_needle, prompt_parts

        needle = instantiate_needle(self.spec, seed)
        return prompt_parts(self.spec, needle, model_cfg), needle

    def sentences(self, seed: int) -> Iterator[str]:
        """The haystack sentence stream for ``seed``."""
        return self.haystack.sentences(seed)


def prepare_tasks(config: EvalConfig, config_path: Path) -> dict[str, PreparedTask]:
    """Load every task of the config with its haystack; errors name the config field."""
    from evalkit.tasks import haystack_for_task, load_task

    prepared: dict[str, PreparedTask] = {}
    for index, name in enumerate(config.tasks):
        try:
            spec = load_task(name, config.task_search_dirs())
            prepared[spec.name] = PreparedTask(spec, haystack_for_task(spec))
            dropped = getattr(prepared[spec.name].haystack, "dropped_sentences", 0)
            if dropped:  # stated once per run here, and in every record's extra
                log.warning("%s: tasks[%d] (%s): %d haystack sentences hold values of the needle's kind and are "
                            "left out", config_path, index, spec.name, dropped)
        except EvalkitError as err:
            raise type(err)(f"{config_path}: tasks[{index}]: {err}") from None
    return prepared


def check_model_limits(config: EvalConfig, config_path: Path) -> dict[str, str]:
    """Refuse lengths above a model's maximum; return {model name: resolved revision}."""
    from evalkit.models import describe_model

    revisions: dict[str, str] = {}
    longest = max(config.context_lengths)
    for index, model_cfg in enumerate(config.models):
        try:
            info = describe_model(model_cfg)
        except EvalkitError as err:  # say which config entry named the model
            raise type(err)(f"{config_path}: models[{index}].name: {err}") from None
        needed = longest + model_cfg.max_new_tokens
        if info.max_context_tokens is not None and needed > info.max_context_tokens:
            raise ConfigError(
                f"{config_path}: context_lengths: {longest} tokens plus max_new_tokens "
                f"{model_cfg.max_new_tokens} (models[{index}]) exceeds {model_cfg.name}'s maximum of "
                f"{info.max_context_tokens} tokens; use lengths up to {info.max_context_tokens - model_cfg.max_new_tokens}"
            )
        revisions[model_cfg.name] = info.revision
    return revisions


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape results, for the run header."""
    import importlib.metadata as md

    versions = {"python": platform.python_version()}
    for package in ("evalkit", "torch", "transformers", "accelerate", "tokenizers"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def run_header(config: EvalConfig, config_path: Path, revisions: dict[str, str]) -> dict[str, Any]:
    """The header written once per run directory (and compared on resume)."""
    import evalkit

    return {
        "evalkit_version": evalkit.__version__,
        "config": config.model_dump(mode="json"),
        "config_hash": config_hash(config),
        "config_path": str(config_path),
        "seed": config.seed,
        "models": revisions,
        "trust_remote_code": {m.name: m.trust_remote_code for m in config.models},
        "started_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "versions": library_versions(),
    }

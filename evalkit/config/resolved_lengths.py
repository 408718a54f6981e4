"""A config's ``context_lengths`` resolved per model: tokens under ``context_unit: tokens``, floor(fraction x window)
under ``window`` (the field's own rules are ``context_lengths.py``, which ``EvalConfig`` applies at load)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from evalkit.config.context_lengths import MIN_CONTEXT_TOKENS
from evalkit.config.schema import EvalConfig
from evalkit.errors import ConfigError

__all__ = ["ContextLengths", "ResolvedLength", "largest_fitting_fraction", "token_lengths", "window_lengths"]


@dataclass(frozen=True)
class ResolvedLength:
    """One ``context_lengths`` entry for one model: its prompt tokens and, under ``context_unit: window``, the
    fraction of the model's window it is (None under ``tokens``)."""

    tokens: int
    fraction: float | None = None


@dataclass(frozen=True)
class ContextLengths:
    """Each model's lengths, in the order of the config's ``context_lengths`` (entry i of a model is entry i of
    the config), and each model's window where the lengths are fractions of it; models by ``ModelConfig.label``."""

    per_model: tuple[tuple[str, tuple[ResolvedLength, ...]], ...]
    windows: tuple[tuple[str, int], ...] = ()  # context_unit: window only

    def of(self, model: str) -> tuple[ResolvedLength, ...]:
        """``model``'s lengths; KeyError for a model the config does not list."""
        return dict(self.per_model)[model]

    def tokens(self, model: str) -> tuple[int, ...]:
        """``model``'s lengths in tokens, in config order."""
        return tuple(length.tokens for length in self.of(model))

    def config_for(self, config: EvalConfig, model: str) -> EvalConfig:
        """``config`` as ``model``'s trials see it: its lengths in that model's tokens (``context_unit: tokens``).

        For the checks and the prompts of one model, which read ``context_lengths`` as tokens; not for planning:
        the config as written (fractions) is what seeds, the header and ``config_hash`` are made of. Under
        ``tokens`` it is ``config`` itself.
        """
        if config.context_unit == "tokens":
            return config
        # a copy keeps the source path, so errors still name the file
        return config.model_copy(update={"context_unit": "tokens", "context_lengths": list(self.tokens(model))})

    def header_row(self) -> dict[str, dict[str, object]]:
        """``{model: {"window": W, "tokens": [...]}}`` for the run header (empty under ``context_unit: tokens``):
        what a record's ``context_length`` is checked against when the config's lengths are fractions."""
        windows = dict(self.windows)
        return {model: {"window": windows[model], "tokens": [length.tokens for length in lengths]}
                for model, lengths in self.per_model if model in windows}


def token_lengths(config: EvalConfig) -> ContextLengths:
    """The lengths of a ``context_unit: tokens`` config: the same for every model. A window config is refused:
    its tokens depend on each model's window (``window_lengths``)."""
    if config.context_unit != "tokens":
        raise ConfigError(f"{config.source_label}: context_unit: window: the lengths are fractions of each model's "
                          "window; resolve them with the models' windows first (evalkit.run.preflight.model_limits)")
    lengths = tuple(ResolvedLength(int(length)) for length in config.context_lengths)
    return ContextLengths(tuple((model.label, lengths) for model in config.models))


def window_lengths(config: EvalConfig, windows: Mapping[str, int | None], label: str) -> ContextLengths:
    """Each model's lengths as ``floor(fraction x window)`` tokens; ``windows`` maps model labels to the window
    found for each (None: neither ``context_window`` nor the model's config says it). ConfigError naming
    ``label`` (the config file), the field and the fix for a length that cannot be run."""
    per_model, found = [], []
    for index, model in enumerate(config.models):
        window = model.context_window or windows.get(model.label)
        if window is None:
            raise ConfigError(
                f"{label}: models[{index}].context_window: context_unit: window needs {model.label}'s maximum context "
                f"and its config does not say it; set models[{index}].context_window to the tokens it (or its "
                "engine) takes, or use context_unit: tokens")
        budget = model.max_new_tokens + model.reasoning_tokens
        lengths = tuple(ResolvedLength(math.floor(fraction * window), float(fraction))
                        for fraction in config.context_lengths)
        for length in lengths:
            _check_fits(label, index, model.label, window, budget, length)
        _check_distinct(label, model.label, window, lengths)
        per_model.append((model.label, lengths))
        found.append((model.label, window))
    return ContextLengths(tuple(per_model), tuple(found))


def largest_fitting_fraction(window: int, budget: int) -> float:
    """The largest fraction (3 decimals, rounded down) whose tokens plus ``budget`` answer tokens fit ``window``."""
    return math.floor((window - budget) / window * 1000) / 1000


def _check_fits(label: str, index: int, model: str, window: int, budget: int, length: ResolvedLength) -> None:
    """A resolved length must leave the answer budget inside the window and be at least the shortest length."""
    where = (f"{label}: context_lengths: {length.fraction:g} of {model}'s {window:,}-token window is "
             f"{length.tokens:,} tokens")
    if length.tokens + budget > window:
        raise ConfigError(
            f"{where}, which with the answer budget of {budget} (models[{index}].max_new_tokens + reasoning_tokens) "
            f"exceeds the window; use fractions up to {largest_fitting_fraction(window, budget):g} for {model}")
    if length.tokens < MIN_CONTEXT_TOKENS:
        raise ConfigError(f"{where}, below evalkit's minimum of {MIN_CONTEXT_TOKENS}; use a fraction of at least "
                          f"{math.ceil(MIN_CONTEXT_TOKENS / window * 1000) / 1000:g}")


def _check_distinct(label: str, model: str, window: int, lengths: tuple[ResolvedLength, ...]) -> None:
    """Two fractions that come to the same tokens would plan the same trial twice (one trial id)."""
    seen: dict[int, float | None] = {}
    for length in lengths:
        if length.tokens in seen:
            raise ConfigError(f"{label}: context_lengths: {seen[length.tokens]:g} and {length.fraction:g} both come "
                              f"to {length.tokens:,} tokens of {model}'s {window:,}-token window; list one of them")
        seen[length.tokens] = length.fraction

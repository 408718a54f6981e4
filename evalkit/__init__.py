"""evalkit: measure where in a prompt a language model can still find a fact."""

from __future__ import annotations

from evalkit.errors import (
    CaptureError,
    ConfigError,
    EvalkitError,
    HaystackError,
    ModelLoadError,
    PlacementError,
    RunDirError,
    TaskError,
)
from evalkit.types import BuiltPrompt, PromptParts, TokenSpan, Trial, TrialOutput, TrialRecord

__version__ = "0.1.0"

__all__ = [
    "BuiltPrompt",
    "CaptureError",
    "ConfigError",
    "EvalkitError",
    "HaystackError",
    "ModelLoadError",
    "PlacementError",
    "PromptParts",
    "RunDirError",
    "TaskError",
    "TokenSpan",
    "Trial",
    "TrialOutput",
    "TrialRecord",
    "__version__",
]

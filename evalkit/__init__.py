"""evalkit: measure where in a prompt a language model can still find a fact."""

from __future__ import annotations

from evalkit.errors import (
    CaptureError,
    ConfigError,
    EvalkitError,
    ExportError,
    HaystackError,
    ModelLoadError,
    PlacementError,
    RunDirError,
    TaskError,
)
from evalkit.package_data import package_version
from evalkit.types import BuiltPrompt, PromptParts, TokenSpan, Trial, TrialOutput, TrialRecord

__version__ = package_version()

# Heavy parts (torch, transformers, pandas, seaborn) load on first use, so ``import evalkit``
# and the CLI's ``--help`` stay fast.
_LAZY = {
    "EvalConfig": "evalkit.config.schema",
    "ModelConfig": "evalkit.config.schema",
    "load_config": "evalkit.config.schema",
    "run_eval": "evalkit.run.runner",
    "RunSummary": "evalkit.run.runner",
    "PromptBuilder": "evalkit.prompt.builder",
    "load_model": "evalkit.models",
    "run_prompt": "evalkit.models",
    "score_answer": "evalkit.scoring",
    "AttentionCapture": "evalkit.attention.capture",
    "load_attention": "evalkit.report.data.attention",
    "load_attention_argmax": "evalkit.report.data.attention",
    "load_results": "evalkit.report",
    "write_report": "evalkit.report",
    "plot_heatmap": "evalkit.report",
    "plot_accuracy_vs_depth": "evalkit.report",
    "summary_table": "evalkit.report",
    "wilson_interval": "evalkit.report",
    "export_run": "evalkit.export",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'evalkit' has no attribute {name!r}")

__all__ = [
    "BuiltPrompt",
    "CaptureError",
    "ConfigError",
    "EvalkitError",
    "ExportError",
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
    *_LAZY,
]

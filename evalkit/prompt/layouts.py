"""Apply a prompt layout (``config/layouts.py``: the axes and their grid) to one trial's prompt parts."""

from __future__ import annotations

import dataclasses

from evalkit.config.layouts import CONTEXT_MARKERS, DEFAULT_SYSTEM_PROMPT, Layout
from evalkit.types import PromptParts

__all__ = ["Layout", "apply_layout"]

def apply_layout(parts: PromptParts, layout: Layout, model_system_prompt: str | None) -> PromptParts:
    """``parts`` (built from the task and model entry) rearranged as ``layout`` says."""
    changes: dict[str, object] = {
        "question_position": layout.question_position,
        "instruction_position": layout.instruction_position,
    }
    if layout.chat_template is not None:
        changes["use_chat_template"] = layout.chat_template
    if layout.system_prompt is not None:
        changes["system_prompt"] = (model_system_prompt or DEFAULT_SYSTEM_PROMPT) if layout.system_prompt else None
    if layout.context_markers != "none":  # markers go outside any text the task puts around its context
        opener, closer = CONTEXT_MARKERS[layout.context_markers]
        changes["context_open"] = f"{opener}\n{parts.context_open}".strip()
        changes["context_close"] = f"{parts.context_close}\n{closer}".strip()
    if not layout.answer_prefix:
        changes["answer_prefix"] = ""
    return dataclasses.replace(parts, **changes)

"""Eval configs: pydantic models for ``configs/*.yaml``, loaded and validated once.

Every error names the file, the field and the fix (see ``ConfigError``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

DTYPES = ("auto", "float32", "float16", "bfloat16")


class ModelConfig(BaseModel):
    """One model entry of an eval config."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="built-in alias (see `evalkit list`), Hub id or local path")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps; ignored when device_map is set")
    device_map: str | None = Field(None, description="accelerate device map, e.g. 'auto' for multi-GPU sharding")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit)")
    chat_template: bool = True
    system_prompt: str | None = None
    max_new_tokens: int = Field(16, ge=1, le=4096)
    trust_remote_code: bool = False
    attn_implementation: str = "sdpa"

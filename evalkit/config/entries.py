"""The entries of an eval config's ``models:`` list and its ``attention:`` section (pydantic, strict).

``schema.py`` composes them into ``EvalConfig``; they live here so each module keeps one job.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from evalkit.config.served import ServedConfig
from evalkit.config.validation_errors import show_value
from evalkit.errors import FieldError

DTYPES = ("auto", "float32", "float16", "bfloat16")
# `device`: what torch can place a model on; `device_map` may also name an accelerate strategy
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda|cuda:\d+|xpu|xpu:\d+)$")
DEVICE_MAP_STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")
# model-entry fields added after runs existed: left out of ``config_hash`` while at their default
MODEL_HASH_OMITTED_AT_DEFAULT = frozenset(
    {"allow_pickle_weights", "backend", "served", "think_pattern", "reasoning_tokens", "chat_template_kwargs",
     "gguf_file", "init", "init_seed", "context_window"}
)


class ModelConfig(BaseModel):
    """One model entry of an eval config."""

    # strict like the top level: `trust_remote_code: "yes"` or `max_new_tokens: "8"` is refused, not coerced
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, description="built-in alias (`evalkit list`), Hub id, local folder or .gguf file")
    gguf_file: str | None = Field(
        None, min_length=1, description="the GGUF file to convert inside the folder or Hub repo `name` (one of several)"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps; ignored when device_map is set",
                        json_schema_extra={"pattern": DEVICE_PATTERN.pattern})
    device_map: str | None = Field(
        None, description="accelerate device map, e.g. 'auto' for multi-GPU sharding",
        json_schema_extra={"anyOf": [{"enum": list(DEVICE_MAP_STRATEGIES)},
                                     {"type": "string", "pattern": DEVICE_PATTERN.pattern}, {"type": "null"}]})
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit)")
    chat_template: bool = True
    system_prompt: str | None = None
    max_new_tokens: int = Field(16, ge=1, le=4096)
    trust_remote_code: bool = False
    attn_implementation: str = Field(
        "sdpa", description="attention kernel the model loads with; while attention.capture is on, attention.inner "
        "decides instead (an explicit different value here is refused)"
    )
    backend: str = Field(
        "transformers", min_length=1, description="how the model is run (evalkit/models/backends.py): transformers"
    )
    allow_pickle_weights: bool = Field(
        False, description="load .bin/.pt weights (Python pickles) when a model has no safetensors"
    )
    served: ServedConfig | None = Field(None, description="engine address and client settings (backend: served)")
    # thinking models: the reasoning block is cut before scoring (the record keeps the raw answer)
    think_pattern: str | None = Field(
        None, description=r"regex removed from the answer before scoring, e.g. '(?s)<think>.*?(</think>|$)'"
    )
    reasoning_tokens: int = Field(0, ge=0, le=32768, description="extra new tokens allowed for the reasoning block")
    chat_template_kwargs: dict[str, bool | int | float | str] = Field(
        default_factory=dict, description="passed to the chat template, e.g. {enable_thinking: false}"
    )
    context_window: int | None = Field(
        None, ge=32, description="the model's maximum context in tokens, where its config does not say it (a served "
        "engine's context size); wins over the config's value. context_unit: window resolves fractions of it"
    )
    # the untrained control (docs/models.md): the same architecture and tokenizer, the family's own random init
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="pretrained: the trained weights; random: the same architecture and tokenizer with "
        "random weights drawn from init_seed (a control: accuracy not meaningful, attention shows the prior)"
    )
    init_seed: int = Field(0, description="seed of the random weights (init: random only)")

    @property
    def label(self) -> str:
        """How records, trial ids, headers and reports name this entry: ``name``, or for an untrained control
        ``"NAME (random init, seed N)"``, so the trained model and its control can be listed side by side."""
        if self.init == "random":
            return f"{self.name} (random init, seed {self.init_seed})"
        return self.name

    @field_validator("think_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"{show_value(value)} is not a regular expression ({err}); fix or remove it") from None
        return value

    @model_validator(mode="after")
    def _served_block(self) -> ModelConfig:
        # the block and the backend go together: one without the other is a half-written entry
        if self.backend == "served" and self.served is None:
            raise FieldError("served", "backend: served needs a served: block; add served: {base_url: http://...}")
        if self.served is not None and self.backend != "served":
            raise FieldError("served", f"is set but backend is {self.backend!r}; set backend: served or remove it")
        return self

    @model_validator(mode="after")
    def _random_init(self) -> ModelConfig:
        # random weights are built in this process; a served engine loads its own (trained) weights
        if self.init == "random" and self.backend == "served":
            raise FieldError("init", "random builds the weights in this process, but backend: served runs the "
                             "engine's own weights; use backend: transformers for the random-init control")
        # a seed other than the default without init: random is a half-written entry; the default itself is what a
        # saved config (a run header) writes back, and must read again
        if self.init == "pretrained" and self.init_seed != 0:
            raise FieldError("init_seed", "applies to init: random only (pretrained weights have no seed); "
                             "set init: random or remove init_seed")
        return self

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not DEVICE_PATTERN.match(value):
            raise ValueError(f"{show_value(value)} is not a device; use auto, cpu, cuda, cuda:N or mps")
        return value

    @field_validator("device_map")
    @classmethod
    def _known_device_map(cls, value: str | None) -> str | None:
        if value is not None and value not in DEVICE_MAP_STRATEGIES and not DEVICE_PATTERN.match(value):
            raise ValueError(
                f"{show_value(value)} is not a device map; use {', '.join(DEVICE_MAP_STRATEGIES)} or a device "
                "(cpu, cuda:N), or remove it"
            )
        return value


class AttentionConfig(BaseModel):
    """The ``attention:`` section: per-trial attention mass on prompt regions (see evalkit/attention/).

    ``inner`` is the kernel that still computes the model's output under capture; ``auto`` is sdpa, or the
    family's eager kernel where it needs one (softcap, sinks). While capture is on it is the kernel every model
    loads with: it wins over ``models[*].attn_implementation``, and a model entry that sets that to another kernel
    is refused by validate (see ``evalkit/attention/preflight.py``).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    capture: bool = Field(False, description="record attention mass per region for every trial")
    decode_steps: int = Field(
        0, ge=0, le=64, description="extra rows: the first generated tokens (0 = last prompt token only)"
    )
    bins: int = Field(20, ge=1, le=512, description="equal positional bins of the haystack (context) span")
    sink_tokens: int = Field(1, ge=0, le=64, description="first prompt tokens counted as the `sink` region")
    inner: Literal["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"] = "sdpa"
    tokens: bool = Field(False, description="also store each captured row's mass on every prompt token "
                         "(mean over heads, float16, compressed) for the trial viewer")
    token_layers: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list, description="layers whose per-token mass is stored (empty: every layer)"
    )


# ``attention`` fields added after runs existed: left out of ``config_hash`` at their default, so old runs resume.
ATTENTION_HASH_OMITTED_AT_DEFAULT = frozenset({"tokens", "token_layers"})

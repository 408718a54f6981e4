"""Eval configs: pydantic models for ``configs/*.yaml``, loaded and validated once.

Every error names the file, the field and the fix (see ``ConfigError``), e.g.
``configs/x.yaml: models[0].dtype: 'bf17' is not one of auto, float32, float16, bfloat16; use one of these``.

Paths: a relative ``output_dir`` is relative to the current working directory (where ``evalkit`` runs, like
``--output-dir``); every other path (a task path in ``tasks``, ``task_dirs``, ``data_dir``, ``from_run``) is
relative to the config file, so a config can ship with its own tasks and runs the same from any folder.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
)

from evalkit.errors import ConfigError
from evalkit.config.validation_errors import show_value, describe_validation_error
from evalkit.config.context_lengths import LENGTHS_BY_UNIT, a_number, check_lengths_in_unit, lengths_schema
from evalkit.config.entries import (
    ATTENTION_HASH_OMITTED_AT_DEFAULT,
    MODEL_HASH_OMITTED_AT_DEFAULT,
    AttentionConfig,
    ModelConfig,
)
from evalkit.config.json_schema import string_items
from evalkit.config.layouts import LayoutGrid
from evalkit.config.mitigations import (
    ARM_NAMES,
    DOCUMENT_ATTENTION_ARMS,
    Mitigation,
    NoMitigation,
    check_arm_names,
    check_same_run_heads,
    expand_arm_shorthand,
)
from evalkit.config.search import SearchConfig
from evalkit.config.served import SERVED_HASH_EXCLUDED_FIELDS
from evalkit.config.yaml_io import (
    DuplicateKeyError,
    ExpansionError,
    NestingError,
    read_yaml_mapping,
    safe_load_text,
    yaml_problem,
)

MAX_TRIALS = 10_000_000  # per run: far above any real grid, low enough to refuse a typo before planning it
# every sample's needle is tokenized by the checks before a run (about 0.4 ms each): 10,000 stay near 4 s
MAX_SAMPLES = 10_000


# Fields that say where things live, not what is measured: left out of ``config_hash``.
# How trials are scheduled (reuse, batch size) does not change results beyond float noise either.
# ``search`` is what ``evalkit calibrate`` varies, not part of the grid a run plans.
HASH_EXCLUDED_FIELDS = frozenset({"output_dir", "task_dirs", "reuse_prefix", "batch_size", "data_dir", "search"})
# Fields added after runs existed: left out of ``config_hash`` while at their default, so old runs resume.
LAYOUT_HASH_OMITTED_AT_DEFAULT = ("distractor_count", "haystack_order", "needle_variant")
HASH_OMITTED_AT_DEFAULT = frozenset({"context_unit", "controls", "layout", "mitigations", "values"})
# The same for fields of each model entry.


class EvalConfig(BaseModel):
    """A whole eval: models x tasks x context lengths x depths x samples.

    Built by ``load_config`` (which records the file it came from) or directly in code
    (then relative ``task_dirs`` and task paths are relative to the current working directory).
    """

    # strict: YAML already gives typed values, so `samples: "3"` or `depths: [true]` is a mistake
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True,
                              json_schema_extra={"allOf": [LENGTHS_BY_UNIT]})

    # json_schema_extra: what the validators below accept or refuse beyond the type, for `evalkit schema`
    models: list[ModelConfig] = Field(min_length=1, description="model entries; a plain string is {name: ...}",
                                      json_schema_extra=string_items({"type": "string", "minLength": 1}, unique=True))
    tasks: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="task names or .yaml paths (relative to the config file)",
        json_schema_extra={"uniqueItems": True})
    # before context_lengths: its validator reads the unit
    context_unit: Literal["tokens", "window"] = Field(
        "tokens", description="what context_lengths count: tokens (whole numbers >= 32), or window: fractions in "
        "(0, 1] of each model's maximum context, resolved per model to floor(fraction x window) tokens")
    context_lengths: list[Annotated[int | float, BeforeValidator(a_number)]] = Field(
        min_length=1, description="total prompt tokens (context_unit: tokens), or fractions of each model's "
        "window (context_unit: window)", json_schema_extra=lengths_schema)
    depths: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        min_length=1, description="fraction of the haystack (in tokens) before the needle",
        json_schema_extra={"uniqueItems": True})
    samples: int = Field(ge=1, description="samples (needle values / haystack streams) per grid cell",
                         json_schema_extra={"maximum": MAX_SAMPLES})
    seed: int = 0
    values: Literal["per_sample", "per_trial"] = Field(
        "per_sample", description="per_sample: a sample's needle value and haystack stream are shared by all its "
        "lengths and depths (paired comparisons); per_trial: each length x depth cell draws its own (independent "
        "trials; layouts and mitigation arms of a cell still share it)")
    output_dir: str = Field(min_length=1, description="run directory; relative to the current working directory",
                            json_schema_extra={"pattern": r"\S"})  # not blank
    save_prompts: bool = False
    length_tolerance_tokens: int = Field(0, ge=0, description="allowed |prompt tokens - context length|")
    task_dirs: list[str] = Field(default_factory=list, description="extra task folders, relative to the config file")
    data_dir: str | None = Field(
        None, description="where documents tasks' relative data paths start (relative to the config file; "
        "default: each task file's folder)"
    )
    reuse_prefix: bool = Field(True, description="share the KV cache of the prompt prefix across depths")
    batch_size: int | str = Field(
        1, description="prompts per forward when reuse_prefix is false; auto: largest that fits",
        json_schema_extra={"anyOf": [{"type": "integer", "minimum": 1}, {"const": "auto"}]},
    )
    controls: list[Literal["closed_book", "oracle", "dummy_needle"]] = Field(
        default_factory=list, description="control trials per sample (see evalkit/prompt/controls.py)",
        json_schema_extra={"uniqueItems": True},
    )
    layout: LayoutGrid = Field(default_factory=LayoutGrid, description="prompt layout axes (see evalkit/config/layouts.py)")
    attention: AttentionConfig = Field(default_factory=AttentionConfig, description="attention capture")
    mitigations: list[Mitigation] = Field(
        default_factory=lambda: [NoMitigation()], min_length=1,
        description="experiment arms, each on the baseline's trials (see evalkit/config/mitigations.py)",
        json_schema_extra=string_items({"enum": list(ARM_NAMES)}, unique=True))
    search: SearchConfig | None = Field(
        None, description="the difficulty search of `evalkit calibrate` (see evalkit/config/search.py); "
        "evalkit run ignores it")

    _source_path: Path | None = PrivateAttr(None)

    @field_validator("mitigations", mode="before")
    @classmethod
    def _expand_arm_shorthand(cls, value: Any) -> Any:
        return expand_arm_shorthand(value)

    @field_validator("mitigations")
    @classmethod
    def _arm_names(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        check_arm_names(value)
        attention = info.data.get("attention")
        for index, arm in enumerate(value):  # the first pass reads the attention capture records
            if arm.arm in DOCUMENT_ATTENTION_ARMS and attention is not None and not attention.capture:
                raise ValueError(f"mitigations[{index}]: {arm.arm} reads attention per document; set "
                                 "attention: {capture: true} or drop this arm")
            if arm.arm == "mask_heads" and arm.from_this_run:
                check_same_run_heads(value, index, attention is not None and attention.capture)
        return value

    def arm(self, label: str) -> Any:
        """The ``mitigations`` entry whose name (``label``) is ``label``; KeyError when none is."""
        for arm in self.mitigations:
            if arm.label == label:
                return arm
        raise KeyError(label)

    @field_validator("output_dir")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        # a blank name would write the run into the current directory
        if not value.strip():
            raise ValueError(f"{show_value(value)} is blank; give a folder name such as reports/runs/try1")
        return value

    @field_validator("models", mode="before")
    @classmethod
    def _expand_model_shorthand(cls, value: Any) -> Any:
        # `- smollm2-135m-instruct` is shorthand for `- {name: smollm2-135m-instruct}`
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("models", "tasks", "context_lengths", "depths", "controls")
    @classmethod
    def _no_repeats(cls, value: list[Any], info: ValidationInfo) -> list[Any]:
        # a repeated entry would plan the same trial twice (same trial id); a model is its label (name and init)
        keys = [item.label if isinstance(item, ModelConfig) else item for item in value]
        seen: dict[Any, int] = {}
        for index, key in enumerate(keys):
            if key in seen:
                where = f"{info.field_name}[{seen[key]}] and {info.field_name}[{index}]"
                raise ValueError(f"{show_value(key)} appears twice ({where}); list it once")
            seen[key] = index
        return value

    @field_validator("context_lengths")
    @classmethod
    def _lengths_in_unit(cls, value: list[int | float], info: ValidationInfo) -> list[int | float]:
        unit = info.data.get("context_unit")
        # unit None: the unit itself was refused, and that error is the one to read
        return value if unit is None else check_lengths_in_unit(value, unit)

    @field_validator("samples")
    @classmethod
    def _grid_size(cls, value: int, info: ValidationInfo) -> int:
        # a typo such as `samples: 1000000` would plan (and hold in memory) billions of trials
        sizes = [len(info.data.get(key) or [0]) for key in ("models", "tasks", "context_lengths", "depths")]
        trials = value * sizes[0] * sizes[1] * sizes[2] * sizes[3]
        if trials > MAX_TRIALS:
            raise ValueError(
                f"{value} samples make a grid of {trials:,} trials, above evalkit's limit of {MAX_TRIALS:,} per run; "
                "use fewer samples, lengths or depths, or split the grid over several configs"
            )
        if value > MAX_SAMPLES:
            raise ValueError(
                f"{value} is above evalkit's limit of {MAX_SAMPLES:,} samples per cell (each sample's needle is "
                f"checked before a run); use at most {MAX_SAMPLES:,}, or split the samples over several seeds"
            )
        return value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_needs_no_reuse(cls, value: Any, info: ValidationInfo) -> int | str:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{show_value(value)} is not a whole number >= 1 or auto; write e.g. 8 or auto")
        # a reuse group runs its depths one after another on one cache: batching applies without reuse
        if value != 1 and info.data.get("reuse_prefix", True):
            raise ValueError(
                f"{show_value(value)} needs reuse_prefix: false (batches run without prefix reuse); "
                "set reuse_prefix: false, or batch_size: 1 to keep reuse"
            )
        return value

    @field_validator("attention")
    @classmethod
    def _decode_steps_fit(cls, value: AttentionConfig, info: ValidationInfo) -> AttentionConfig:
        # decode row t is the forward that feeds generated token t; greedy decoding runs max_new_tokens - 1 of them
        if value.capture and info.data.get("batch_size", 1) != 1:
            raise ValueError(
                "capture: true runs one prompt per forward; set batch_size: 1 (prefix reuse stays on) "
                "or attention.capture: false"
            )
        if not value.capture or value.decode_steps == 0:
            return value
        for index, model in enumerate(info.data.get("models") or []):
            if value.decode_steps > model.max_new_tokens - 1:
                raise ValueError(
                    f"decode_steps {value.decode_steps} needs max_new_tokens >= {value.decode_steps + 1}, but "
                    f"models[{index}] ({model.label}) has {model.max_new_tokens}; lower attention.decode_steps "
                    f"or raise models[{index}].max_new_tokens"
                )
        return value

    @property
    def source_path(self) -> Path | None:
        """The YAML file this config was loaded from (None when built in code)."""
        return self._source_path

    @property
    def source_label(self) -> str:
        """How errors name this config: its file path as given, or ``<config>``."""
        return str(self._source_path) if self._source_path is not None else "<config>"

    @property
    def base_dir(self) -> Path:
        """Folder that relative ``task_dirs`` are relative to (the config file's folder, else the cwd)."""
        return self._source_path.parent if self._source_path is not None else Path.cwd()

    def data_path(self) -> Path | None:
        """``data_dir`` resolved against ``base_dir`` (None: documents tasks read paths from their own folder)."""
        return None if self.data_dir is None else self.base_dir / Path(self.data_dir).expanduser()

    def task_search_dirs(self) -> tuple[Path, ...]:
        """``task_dirs`` resolved against ``base_dir``, in the order written (searched before the defaults)."""
        return tuple(self.base_dir / Path(d).expanduser() for d in self.task_dirs)


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Sequence[str] = (), output_dir: str | None = None) -> EvalConfig:
    """Read, override and validate an eval config; raise ``ConfigError`` with file, field and fix.

    ``overrides`` are CLI ``--set KEY=VALUE`` strings: KEY is dotted (``models.0.dtype``; ``models[0].dtype``
    also works), VALUE is parsed as YAML (``depths=[0,0.5,1]``). ``output_dir`` (CLI ``--output-dir``) is a
    folder name taken as written, never parsed as YAML (``exp #1`` is not ``exp`` plus a comment).
    """
    raw, set_paths = read_raw_config(path, overrides, output_dir)
    try:
        cfg = EvalConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(str(path), exc, EvalConfig, set_paths)) from None
    cfg._source_path = Path(path)
    return cfg


def read_raw_config(path: str | Path, overrides: Sequence[str] = (),
                    output_dir: str | None = None) -> tuple[dict[str, Any], list[str]]:
    """The mapping ``load_config`` validates (the file's YAML with ``--set`` and ``--output-dir`` applied) and
    the fields ``--set`` gave; ``ConfigError`` for what fails before validation (YAML, ``--set`` syntax)."""
    raw = read_yaml_mapping(path, ConfigError, "models, tasks, context_lengths, depths, samples, output_dir")
    set_paths = [apply_override(raw, item, str(path)) for item in overrides]
    if output_dir is not None:
        raw["output_dir"] = output_dir
    return raw, set_paths


def apply_override(raw: dict[str, Any], item: str, label: str) -> str:
    """Apply one ``KEY=VALUE`` override to the raw config mapping in place; return KEY as ``a[0].b``."""
    key, sep, text = item.partition("=")
    parts = [p for p in key.strip().replace("[", ".").replace("]", "").split(".")]
    if not sep or not key.strip() or any(not p for p in parts):
        raise ConfigError(f"{label}: --set {item!r}: expected KEY=VALUE with a dotted KEY; e.g. --set samples=3")
    try:
        value = safe_load_text(text)
    except NestingError as exc:
        raise ConfigError(f"{label}: --set {_short(item)}: {exc}; write a flatter value") from None
    except ExpansionError as exc:
        raise ConfigError(f"{label}: --set {_short(item)}: {exc}; write the values out") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{label}: --set {_short(item)}: {exc}; keep one of them") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: --set {item!r}: {yaml_problem(exc)}; quote or fix the value") from None
    node: Any = raw
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{label}: --set {item!r}: {part!r} is not an index of {_dotted(parts[:depth])} "
                    f"(it has {len(node)} entries); use 0 to {len(node) - 1}"
                )
            if last:
                node[int(part)] = value
                break
            if parts[0] == "models" and isinstance(node[int(part)], str):
                node[int(part)] = {"name": node[int(part)]}  # expand the shorthand so its keys can be set
            node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
                break
            node = node.setdefault(part, {})
        else:
            raise ConfigError(
                f"{label}: --set {item!r}: {_dotted(parts[:depth])} is {show_value(node)}, not a mapping or list; "
                "set the whole value instead"
            )
    return _dotted(parts)


def _short(item: str) -> str:
    """``repr`` of a ``--set`` item, cut to keep the error on one readable line."""
    text = repr(item)
    return text if len(text) <= 80 else text[:77] + "..."


def _dotted(parts: Sequence[str]) -> str:
    return "".join(f"[{p}]" if p.isdigit() else (f".{p}" if i else p) for i, p in enumerate(parts))


def config_hash(cfg: EvalConfig) -> str:
    """16 hex chars of sha256 over the canonical JSON of the fields that define results.

    ``HASH_EXCLUDED_FIELDS`` (where the run is written, where tasks are searched) are left out;
    task contents enter trial ids through ``TaskSpec.content_hash`` instead.
    """
    excluded = set(HASH_EXCLUDED_FIELDS)
    if not cfg.attention.capture:  # its settings change nothing then (and configs from before it hash alike)
        excluded.add("attention")
    data = cfg.model_dump(mode="json", exclude=excluded)
    for name in ATTENTION_HASH_OMITTED_AT_DEFAULT:
        if "attention" in data and getattr(cfg.attention, name) == AttentionConfig.model_fields[name].get_default(
                call_default_factory=True):
            data["attention"].pop(name, None)
    for name in HASH_OMITTED_AT_DEFAULT:
        if getattr(cfg, name) == EvalConfig.model_fields[name].get_default(call_default_factory=True):
            data.pop(name, None)
    for name in LAYOUT_HASH_OMITTED_AT_DEFAULT:  # axes added later: grids from before them hash as they did
        if "layout" in data and getattr(cfg.layout, name) == LayoutGrid.model_fields[name].get_default(
                call_default_factory=True):
            data["layout"].pop(name, None)
    for model, entry in zip(cfg.models, data["models"]):
        for name in MODEL_HASH_OMITTED_AT_DEFAULT:
            if getattr(model, name) == ModelConfig.model_fields[name].get_default(call_default_factory=True):
                entry.pop(name, None)
        for name in SERVED_HASH_EXCLUDED_FIELDS if entry.get("served") else ():
            entry["served"].pop(name, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def config_hash_without_samples(cfg: EvalConfig) -> str:
    """``config_hash`` with the sample count left out: configs that differ only in ``samples`` hash alike.

    A trial's id and seed depend on its sample index, not on the count (``config/trial_ids.py``), so such configs
    plan the same trials for the samples both hold: a run grows by raising ``samples`` (``store/growth.py``).
    """
    return config_hash(cfg.model_copy(update={"samples": 1}))

"""Eval configs: pydantic models for ``configs/*.yaml``, loaded and validated once.

Every error names the file, the field and the fix (see ``ConfigError``), e.g.
``configs/x.yaml: models[0].dtype: 'bf17' is not one of auto, float32, float16, bfloat16; use one of these``.

Paths: a relative ``output_dir`` and a relative task path in ``tasks`` are relative to the current working
directory (where ``evalkit`` runs, like any command-line path); relative ``task_dirs`` are relative to the
config file, so a config can ship with its own task folder.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator

from evalkit.errors import ConfigError, FieldError
from evalkit.layouts import LayoutGrid

DTYPES = ("auto", "float32", "float16", "bfloat16")
MAX_TRIALS = 10_000_000  # per run: far above any real grid, low enough to refuse a typo before planning it


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


class AttentionConfig(BaseModel):
    """The ``attention:`` section: per-trial attention mass on prompt regions (see evalkit/attention/).

    ``inner`` is the kernel that still computes the model's output under capture; ``auto`` is sdpa, or the
    family's eager kernel where it needs one (softcap, sinks). It replaces ``models[*].attn_implementation``
    while capture is on.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    capture: bool = Field(False, description="record attention mass per region for every trial")
    decode_steps: int = Field(
        0, ge=0, le=64, description="extra rows: the first generated tokens (0 = last prompt token only)"
    )
    bins: int = Field(20, ge=1, le=512, description="equal positional bins of the haystack (context) span")
    sink_tokens: int = Field(1, ge=0, le=64, description="first prompt tokens counted as the `sink` region")
    inner: Literal["auto", "sdpa", "eager", "flash_attention_2", "flash_attention_3"] = "sdpa"


# Fields that say where things live, not what is measured: left out of ``config_hash``.
# How trials are scheduled (reuse, batch size) does not change results beyond float noise either.
HASH_EXCLUDED_FIELDS = frozenset({"output_dir", "task_dirs", "reuse_prefix", "batch_size"})
# Fields added after runs existed: left out of ``config_hash`` while at their default, so old runs resume.
HASH_OMITTED_AT_DEFAULT = frozenset({"controls", "layout"})


class EvalConfig(BaseModel):
    """A whole eval: models x tasks x context lengths x depths x samples.

    Built by ``load_config`` (which records the file it came from) or directly in code
    (then relative ``task_dirs`` are relative to the current working directory).
    """

    # strict: YAML already gives typed values, so `samples: "3"` or `depths: [true]` is a mistake
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    models: list[ModelConfig] = Field(min_length=1, description="model entries; a plain string is {name: ...}")
    tasks: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, description="task names or .yaml paths")
    context_lengths: list[Annotated[int, Field(ge=32)]] = Field(min_length=1, description="total prompt tokens")
    depths: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        min_length=1, description="fraction of the haystack (in tokens) before the needle"
    )
    samples: int = Field(ge=1, description="samples (needle values / haystack streams) per grid cell")
    seed: int = 0
    output_dir: str = Field(min_length=1, description="run directory; relative to the current working directory")
    save_prompts: bool = False
    length_tolerance_tokens: int = Field(0, ge=0, description="allowed |prompt tokens - context length|")
    task_dirs: list[str] = Field(default_factory=list, description="extra task folders, relative to the config file")
    reuse_prefix: bool = Field(True, description="share the KV cache of the prompt prefix across depths")
    batch_size: int | str = Field(
        1, description="prompts per forward when reuse_prefix is false; auto: largest that fits"
    )
    controls: list[Literal["closed_book", "oracle", "dummy_needle"]] = Field(
        default_factory=list, description="control trials per sample (see evalkit/controls.py)"
    )
    layout: LayoutGrid = Field(default_factory=LayoutGrid, description="prompt layout axes (see evalkit/layouts.py)")
    attention: AttentionConfig = Field(default_factory=AttentionConfig, description="attention capture")

    _source_path: Path | None = PrivateAttr(None)

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
        # a repeated entry would plan the same trial twice (same trial id)
        keys = [item.name if isinstance(item, ModelConfig) else item for item in value]
        seen: dict[Any, int] = {}
        for index, key in enumerate(keys):
            if key in seen:
                where = f"{info.field_name}[{seen[key]}] and {info.field_name}[{index}]"
                raise ValueError(f"{_show(key)} appears twice ({where}); list it once")
            seen[key] = index
        return value

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
        return value

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_needs_no_reuse(cls, value: Any, info: ValidationInfo) -> int | str:
        if value != "auto" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{_show(value)} is not a whole number >= 1 or auto; write e.g. 8 or auto")
        # a reuse group runs its depths one after another on one cache: batching applies without reuse
        if value != 1 and info.data.get("reuse_prefix", True):
            raise ValueError(
                f"{_show(value)} needs reuse_prefix: false (batches run without prefix reuse); "
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
                    f"models[{index}] ({model.name}) has {model.max_new_tokens}; lower attention.decode_steps "
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

    def task_search_dirs(self) -> tuple[Path, ...]:
        """``task_dirs`` resolved against ``base_dir``, in the order written (searched before the defaults)."""
        return tuple(self.base_dir / Path(d).expanduser() for d in self.task_dirs)


# ---------------------------------------------------------------- loading


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> EvalConfig:
    """Read, override and validate an eval config; raise ``ConfigError`` with file, field and fix.

    ``overrides`` are CLI ``--set KEY=VALUE`` strings: KEY is dotted (``models.0.dtype``; ``models[0].dtype``
    also works), VALUE is parsed as YAML (``depths=[0,0.5,1]``).
    """
    label = str(path)
    raw = read_yaml_mapping(path, ConfigError, "models, tasks, context_lengths, depths, samples, output_dir")
    set_paths = [apply_override(raw, item, label) for item in overrides]
    try:
        cfg = EvalConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(label, exc, EvalConfig, set_paths)) from None
    cfg._source_path = Path(path)
    return cfg


def read_yaml_mapping(path: str | Path, error: type[Exception], keys_hint: str) -> dict[str, Any]:
    """``yaml.safe_load`` a file whose top level must be a mapping; raise ``error`` with a one-line fix."""
    label = str(path)
    file = Path(path)
    if not file.exists():
        raise error(f"{label}: file not found; check the path (relative paths start at {Path.cwd()})")
    if not file.is_file():
        raise error(f"{label}: not a file; give the path of a .yaml file")
    try:
        data = _safe_load_unique_keys(file.read_text(encoding="utf-8"))
    except DuplicateKeyError as exc:
        raise error(f"{label}: {exc}; keep one of them (YAML would silently use the last)") from None
    except yaml.YAMLError as exc:
        raise error(f"{label}: {_yaml_problem(exc)}; fix the YAML syntax there") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{label}: cannot read the file ({exc}); check its permissions and encoding (UTF-8)") from None
    if not isinstance(data, dict):
        # the hint names the keys a user most needs; unknown keys are caught later by the model
        found = "an empty file" if data is None else f"a {_yaml_kind(data)}"
        raise error(
            f"{label}: top level: expected a mapping of keys ({keys_hint}), got {found}; write key: value pairs"
        )
    return data


class DuplicateKeyError(yaml.YAMLError):
    """A mapping that names one key twice (a typo that plain YAML resolves silently: the last one wins)."""


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (plain data only, never Python objects) that refuses repeated keys."""


def _construct_unique_mapping(loader: _UniqueKeySafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    loader.flatten_mapping(node)
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int, float, bool)):
            continue  # unhashable or odd keys: the schema refuses them later with a clearer message
        line = key_node.start_mark.line + 1
        if key in first_line:
            raise DuplicateKeyError(f"line {line}: key {key!r} appears twice (first on line {first_line[key]})")
        first_line[key] = line
    return loader.construct_mapping(node, deep=deep)


_UniqueKeySafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)


def _safe_load_unique_keys(text: str) -> Any:
    """``yaml.safe_load`` that also refuses a key written twice in one mapping."""
    loader = _UniqueKeySafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "malformed YAML"
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if isinstance(exc, yaml.constructor.ConstructorError):
        # e.g. !!python/object: safe_load builds plain data only and never runs code a file names
        return f"{where}invalid YAML ({problem}; tags that build Python objects are refused, write plain values)"
    return f"{where}invalid YAML ({problem})"


def _yaml_kind(data: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(type(data), "scalar")


def apply_override(raw: dict[str, Any], item: str, label: str) -> str:
    """Apply one ``KEY=VALUE`` override to the raw config mapping in place; return KEY as ``a[0].b``."""
    key, sep, text = item.partition("=")
    parts = [p for p in key.strip().replace("[", ".").replace("]", "").split(".")]
    if not sep or not key.strip() or any(not p for p in parts):
        raise ConfigError(f"{label}: --set {item!r}: expected KEY=VALUE with a dotted KEY; e.g. --set samples=3")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: --set {item!r}: {_yaml_problem(exc)}; quote or fix the value") from None
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
                f"{label}: --set {item!r}: {_dotted(parts[:depth])} is {_show(node)}, not a mapping or list; "
                "set the whole value instead"
            )
    return _dotted(parts)


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
    for name in HASH_OMITTED_AT_DEFAULT:
        if getattr(cfg, name) == EvalConfig.model_fields[name].get_default(call_default_factory=True):
            data.pop(name, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ---------------------------------------------------------------- pydantic errors -> one line


def describe_validation_error(
    label: str, exc: ValidationError, root: type[BaseModel], set_paths: Sequence[str] = ()
) -> str:
    """Turn a pydantic ``ValidationError`` into ``LABEL: FIELD: what is wrong; how to fix``.

    Only the first error is spelled out; ``(and N more)`` counts the rest. ``set_paths`` are
    fields given by ``--set``: an error inside one says so.
    """
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = tuple(first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, FieldError):  # a whole-model check that names the field it is about
        loc = (*loc, cause.field)
    field, parent, annotation, meta = _walk(root, loc)
    field, text = _explain(first, field, parent, annotation, meta)
    if any(field == p or field.startswith(p + ".") or field.startswith(p + "[") for p in set_paths):
        field += " (from --set)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{label}: {field}: {text}{more}"


def _walk(root: type[BaseModel], loc: Sequence[str | int]) -> tuple[str, Any, Any, list[Any]]:
    """Follow a pydantic error location through the model types.

    Returns the ``a[0].b`` path, the model holding the last key, the annotation there and its
    constraint metadata (``annotated_types.Ge`` ...).
    """
    shown = ""
    parent: Any = root
    annotation: Any = root
    meta: list[Any] = []
    for part in loc:
        annotation = _strip_annotated(annotation)
        if isinstance(part, int):
            shown += f"[{part}]"
            args = typing.get_args(annotation)
            annotation = args[0] if args else None
            meta = _annotated_metadata(annotation)
            continue
        member = _union_member(annotation, part)
        if member is not None:  # tagged unions put the tag into the location; the user never wrote it
            annotation = member
            continue
        info = annotation.model_fields.get(part) if _is_model(annotation) else None
        parent = annotation if _is_model(annotation) else None
        annotation, meta = (info.annotation, list(info.metadata)) if info is not None else (None, [])
        shown += f".{part}" if shown else part
    return shown or "top level", parent, _strip_annotated(annotation), meta


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _annotated_metadata(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is not Annotated:
        return []
    meta: list[Any] = []
    for item in typing.get_args(annotation)[1:]:
        meta.extend(getattr(item, "metadata", [item]))  # a Field(...) inside Annotated keeps its own list
    return meta


def _strip_annotated(annotation: Any) -> Any:
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        # an optional field (`X | None`) is described as X: the error is about the value given
        args = typing.get_args(annotation)
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args and len(args) == 2:
            annotation = next(a for a in args if a is not type(None))
            continue
        return annotation


def _union_members(annotation: Any) -> list[type[BaseModel]]:
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    args = [_strip_annotated(a) for a in typing.get_args(annotation)]
    return [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]


def _union_member(annotation: Any, tag: str) -> type[BaseModel] | None:
    for member in _union_members(annotation):
        for info in member.model_fields.values():
            if typing.get_origin(info.annotation) is Literal and tag in typing.get_args(info.annotation):
                return member
    return None


def _union_tags(annotation: Any, discriminator: str) -> list[str]:
    tags: list[str] = []
    for member in _union_members(annotation):
        info = member.model_fields.get(discriminator)
        if info is not None and typing.get_origin(info.annotation) is Literal:
            tags.extend(str(t) for t in typing.get_args(info.annotation))
    return tags


_KIND_HINTS = {
    "int": ("is not a whole number", "write an integer such as 3"),
    "float": ("is not a number", "write a number such as 0.5"),
    "bool": ("is not true or false", "write true or false"),
    "string": ("is not text", "write text (quote it if YAML reads it as something else)"),
    "list": ("is not a list", "write a YAML list such as [a, b]"),
    "dict": ("is not a mapping", "write key: value pairs"),
    "model": ("is not a mapping", "write key: value pairs"),
}


def _explain(err: dict[str, Any], field: str, parent: Any, annotation: Any, meta: list[Any]) -> tuple[str, str]:
    """(field path, 'what is wrong; how to fix') for one pydantic error dict."""
    kind, value, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if kind == "missing":
        return field, f"required key is missing; add `{field.rsplit('.', 1)[-1]}:`"
    if kind == "extra_forbidden":
        return field, _unknown_key(str(err["loc"][-1]), parent)
    if kind == "literal_error":
        options = [str(o) for o in typing.get_args(annotation)] or [ctx.get("expected", "")]
        return field, f"{_show(value)} is not one of {', '.join(options)}; use one of these"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "kind")).strip("'")
        tags = ", ".join(_union_tags(annotation, key))
        if kind == "union_tag_not_found":
            return f"{field}.{key}", f"required key is missing; add `{key}:` with one of {tags}"
        return f"{field}.{key}", f"{_show(ctx.get('tag'))} is not one of {tags}; use one of these"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return field, _out_of_range(value, kind, ctx, meta)
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        unit = ("item" if kind == "too_short" else "character") + ("s" if least != 1 else "")
        what = "is empty" if value in ([], "") else "is too short"
        return field, f"{_show(value)} {what}; give at least {least} {unit}"
    if kind == "string_pattern_mismatch":
        return field, f"{_show(value)} does not match {ctx.get('pattern')}; use letters, digits, '_', '.' and '-' only"
    if kind in ("value_error", "assertion_error"):
        return field, str(ctx.get("error", err["msg"]))
    prefix = kind.split("_", 1)[0]
    if prefix in _KIND_HINTS or kind == "model_attributes_type":
        what, fix = _KIND_HINTS.get(prefix, _KIND_HINTS["model"])
        return field, f"{_show(value)} {what}; {fix}"
    return field, f"{_show(value)} is invalid ({err['msg']}); fix this value"


def _out_of_range(value: Any, kind: str, ctx: dict[str, Any], meta: list[Any]) -> str:
    low = next((m.ge for m in meta if getattr(m, "ge", None) is not None), None)
    high = next((m.le for m in meta if getattr(m, "le", None) is not None), None)
    if low is not None and high is not None:
        return f"{_show(value)} is not within [{_num(low)}, {_num(high)}]; use a value from {_num(low)} to {_num(high)}"
    words, key, op = {
        "greater_than_equal": ("below the minimum", "ge", ">="),
        "greater_than": ("not above", "gt", ">"),
        "less_than_equal": ("above the maximum", "le", "<="),
        "less_than": ("not below", "lt", "<"),
    }[kind]
    limit = _num(ctx.get(key))
    return f"{_show(value)} is {words} {limit}; use a value {op} {limit}"


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _unknown_key(key: str, parent: Any) -> str:
    allowed = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown key {key!r}; {hint}allowed keys: {', '.join(allowed)}"


def _show(value: Any) -> str:
    """Short repr of a user value for an error message (YAML spelling for null/true/false)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."

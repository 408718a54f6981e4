"""Task specs: the pydantic schema of ``tasks/*.yaml``.

A task says what fact to hide (``needle`` with a generated ``value``), what to ask (``question``),
what counts as the answer (``answer``), and where the filler text comes from (``haystack``).
"""

from __future__ import annotations

import hashlib
import json
import string
from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from evalkit.errors import FieldError
from evalkit.scoring import METRICS
from evalkit.tasks.distractor_spec import DistractorsSpec, check_distractors
from evalkit.tasks.document_spec import DocumentsSpec
from evalkit.tasks.templates import template_fields

# A task name is one path component: no separators, so a name can never walk out of a search folder.
TASK_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"
VariantName = Annotated[str, Field(pattern=TASK_NAME_PATTERN, max_length=64)]  # a needle variant's name, likewise

_SPEC = ConfigDict(extra="forbid", frozen=True, strict=True)


class IntegerValue(BaseModel):
    """A random decimal integer with exactly ``digits`` digits (first digit nonzero)."""

    model_config = _SPEC
    kind: Literal["integer"]
    digits: int = Field(5, ge=1, le=40)


class ChoiceValue(BaseModel):
    """One of the listed ``values``, drawn uniformly."""

    model_config = _SPEC
    kind: Literal["choice"]
    values: list[Annotated[str, Field(min_length=1)]] = Field(min_length=2, json_schema_extra={"uniqueItems": True})

    @field_validator("values")
    @classmethod
    def _unique(cls, values: list[str]) -> list[str]:
        seen = {v: i for i, v in reversed(list(enumerate(values)))}
        for index, item in enumerate(values):
            if seen[item] != index:
                raise ValueError(f"{item!r} appears twice (values[{seen[item]}] and values[{index}]); list it once")
        return values


class WordValue(BaseModel):
    """A concrete noun from the built-in list (``evalkit.tasks.needles.WORDS``)."""

    model_config = _SPEC
    kind: Literal["word"]


class UuidValue(BaseModel):
    """A random UUID4 string (36 chars, lower-case hex)."""

    model_config = _SPEC
    kind: Literal["uuid"]


class FixedValue(BaseModel):
    """The same ``value`` in every trial (``value: {kind: fixed, value: "71432"}``)."""

    model_config = _SPEC
    kind: Literal["fixed"]
    value: str = Field(min_length=1)


ValueSpec = Annotated[Union[IntegerValue, ChoiceValue, WordValue, UuidValue, FixedValue],
                      Field(discriminator="kind")]


class RawPromptSpec(BaseModel):
    """The prompt text around the context when the model's chat template is off (``chat_template: false``).

    The prompt reads ``{instructions}{separator}{context}{separator}{question_format}{answer_format}
    [" " answer_prefix]``; the defaults give evalkit's usual ``"...\n\n{context}\n\nQuestion: {q}\nAnswer:"``.
    ``first_piece_space: false`` places the first context piece without its joining space, so the context can
    open with ``"The"`` right after the separator (later pieces still join with one space). ``needle_line: true``
    puts the needle on a line of its own: ``"...s_k\n{needle}\ns_k+1 ..."`` (the piece after it opens its line
    without a space; at either end of the context the frame's own newline makes the blank line an empty garbage
    line gives in the original pass-key code).
    """

    model_config = _SPEC
    separator: str = Field("\n\n", description="text between instructions, context and question")
    question_format: str = Field("Question: {question}\n", description="the question line; {question} is the question")
    answer_format: str = Field("Answer:", description="text after the question, before the answer prefix")
    first_piece_space: bool = Field(True, description="false: the context opens without a joining space")
    needle_line: bool = Field(False, description="true: the needle is a line of its own (a newline before and "
                                                 "after it), as the original pass-key code writes it")

    @field_validator("question_format")
    @classmethod
    def _has_question(cls, text: str) -> str:
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as exc:
            raise ValueError(f"{text!r} is not a valid template ({exc}); write {{{{ for a literal brace") from None
        if names != {"question"}:
            raise ValueError(f"{text!r} must contain {{question}} and no other field (write {{{{ for a brace)")
        try:
            text.format(question="q")
        except (ValueError, IndexError, KeyError, AttributeError) as exc:
            raise ValueError(f"{text!r} cannot be filled in ({exc}); write plain {{question}}") from None
        return text


class GeneratedHaystackSpec(BaseModel):
    """Filler prose from evalkit's built-in generator (no digits, no task words)."""

    model_config = _SPEC
    source: Literal["generated"]


class FilesHaystackSpec(BaseModel):
    """Filler text from the user's files: a path, folder or glob relative to the task file, or a list of them
    (an entry starting with ``!`` leaves out what it matches, e.g. ``["essays/*.txt", "!essays/rss.txt"]``)."""

    model_config = _SPEC
    source: Literal["files"]
    path: Annotated[str, Field(min_length=1)] | Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class NoiseHaystackSpec(BaseModel):
    """RULER's noise haystack: the same five short sentences repeated (no information at all)."""

    model_config = _SPEC
    source: Literal["noise"]


class KvPairsHaystackSpec(BaseModel):
    """Random ``"uuid": "uuid",`` pairs: the body of Liu et al.'s key-value retrieval JSON object."""

    model_config = _SPEC
    source: Literal["kv_pairs"]


class DocumentsHaystackSpec(BaseModel):
    """Short documents about fictional entities (the distractors of multi-document QA).

    ``similarity`` is the share of distractors that state the asked relation (who founded what) about
    another entity, so they look like answers; the rest describe other facts.
    """

    model_config = _SPEC
    source: Literal["documents"]
    similarity: float = Field(0.5, ge=0.0, le=1.0)


class DatasetHaystackSpec(BaseModel):
    """Text of a Hugging Face dataset saved with ``save_to_disk`` (needs ``pip install evalkit[datasets]``)."""

    model_config = _SPEC
    source: Literal["dataset"]
    path: str = Field(min_length=1, description="folder written by Dataset.save_to_disk, relative to the task file")
    column: str = Field("text", min_length=1)
    split: str | None = Field(None, description="split of a DatasetDict (None for a plain Dataset)")


HaystackSpec = Annotated[
    Union[GeneratedHaystackSpec, FilesHaystackSpec, NoiseHaystackSpec, KvPairsHaystackSpec, DocumentsHaystackSpec,
          DatasetHaystackSpec],
    Field(discriminator="source"),
]


class KvGenerator(BaseModel):
    """Key-value retrieval (Liu et al.): find the value of one UUID key among UUID pairs."""

    model_config = _SPEC
    kind: Literal["kv_retrieval"]


class MultiNeedleGenerator(BaseModel):
    """RULER's multi-needle tasks with ``needles`` needles ("special magic numbers" for word keys).

    ``multikey``: one needle answers, the others carry other keys (distractors); ``multivalue``: every
    needle carries a value of the same key, all must be returned; ``multiquery``: every needle has its
    own key, the question asks all of them. The first needle goes at the trial's depth, the others at
    depths drawn from the sample's seed.
    """

    model_config = _SPEC
    kind: Literal["multikey", "multivalue", "multiquery"]
    needles: int = Field(4, ge=2, le=16)
    digits: int = Field(7, ge=2, le=12)


class DocQaGenerator(BaseModel):
    """Multi-document QA: the gold document about a fictional entity is the needle (pair with a
    ``documents`` haystack); its depth is the gold document's position among the documents."""

    model_config = _SPEC
    kind: Literal["doc_qa"]


class LowOverlapGenerator(BaseModel):
    """NoLiMa-like: the needle names a landmark, the question asks about its city (few shared words).

    The share of the question's content words found in the needle is recorded per trial.
    """

    model_config = _SPEC
    kind: Literal["low_overlap"]


GeneratorSpec = Annotated[
    Union[KvGenerator, MultiNeedleGenerator, DocQaGenerator, LowOverlapGenerator], Field(discriminator="kind")
]


class TaskSpec(BaseModel):
    """One task file. Templates (``needle``, ``question``, ``answer``) may use ``{value}``, and ``{key}`` with a
    ``key:`` block; write ``{{`` for a literal brace. ``instructions`` and ``answer_prefix`` are used verbatim."""

    model_config = _SPEC

    name: str = Field(pattern=TASK_NAME_PATTERN, description="must equal the file name without .yaml")
    description: str = ""
    needle: str | None = Field(None, min_length=1, description="sentence hidden in the haystack; must contain {value}")
    value: ValueSpec | None = None
    key: ValueSpec | None = Field(None, description="a {key} drawn per trial like value (RULER's key of a magic number)")
    question: str | None = Field(None, min_length=1)
    answer: str = Field("{value}", min_length=1, description="gold answer template")
    instructions: str = ""
    answer_prefix: str = Field("", description="text the assistant turn starts with")
    haystack: HaystackSpec = Field(default_factory=lambda: GeneratedHaystackSpec(source="generated"))
    raw_prompt: RawPromptSpec | None = Field(
        None, description="prompt text around the context with the chat template off (None: evalkit's default)"
    )
    needle_variants: dict[VariantName, Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="name -> another needle template (with {value}); a config's "
        "layout.needle_variant picks one per trial (tasks/variants.py)")

    generator: GeneratorSpec | None = Field(
        None, description="a built-in needle kind (tasks/kinds.py) instead of needle, value and question"
    )
    documents: DocumentsSpec | None = Field(
        None, description="real documents, one of them gold (tasks/document_spec.py), instead of a needle"
    )
    distractors: DistractorsSpec | None = Field(
        None, description="look-alikes of the needle planted in the haystack (tasks/distractor_spec.py)"
    )
    metric: Literal[METRICS] = Field(  # type: ignore[valid-type]
        "contains", description="what `correct` means: contains, exact_match, liu (Liu et al.'s exact metric), "
        "subspan_em (its lenient variant; best_subspan_em is its older name) or keyword_recall"
    )
    keyword_threshold: float = Field(0.6, gt=0.0, le=1.0, description="keyword_recall: share needed to be correct")

    _source_path: Path | None = PrivateAttr(None)
    _haystack: object = PrivateAttr(None)  # the source built at load, reused so files are read (and warned about) once

    @field_validator("needle")
    @classmethod
    def _needle_has_value(cls, text: str | None) -> str | None:
        if text is not None and "value" not in template_fields(text):
            raise ValueError(f"{text!r} has no {{value}}; put {{value}} where the generated value goes")
        return text

    @field_validator("needle_variants")
    @classmethod
    def _variants_have_value(cls, variants: dict[str, str] | None) -> dict[str, str] | None:
        for text in (variants or {}).values():  # each variant is a needle: the same rule
            cls._needle_has_value(text)
        return variants

    @field_validator("question", "answer")
    @classmethod
    def _valid_template(cls, text: str | None) -> str | None:
        if text is not None:
            template_fields(text)
        return text

    @model_validator(mode="after")
    def _needle_or_generator(self) -> "TaskSpec":
        # a generator writes needle, question and answer itself; otherwise the templates are required
        if self.documents is not None:
            for name in ("generator", "needle", "value", "question", "raw_prompt", "key"):
                if getattr(self, name) is not None:
                    raise FieldError(name, "a documents task takes its questions from documents.source; remove it")
            if "haystack" in self.model_fields_set:
                raise FieldError("haystack", "a documents task's distractors come from documents.source; remove it")
        elif self.generator is None:
            for name in ("needle", "value", "question"):
                if getattr(self, name) is None:
                    raise FieldError(name, f"required key is missing; add `{name}:` (or a `generator:` block)")
        if self.needle_variants is not None and self.needle is None:
            raise FieldError("needle_variants", "variants replace a task's own `needle:`; add one or remove them")
        if self.raw_prompt is not None and self.raw_prompt.needle_line and isinstance(self.generator,
                                                                                    MultiNeedleGenerator):
            raise FieldError("raw_prompt", "needle_line puts one needle on a line of its own, and this task places "
                                           f"{self.generator.needles}; remove raw_prompt.needle_line")
        self._check_keys_and_distractors()
        return self

    def _check_keys_and_distractors(self) -> None:
        """``{key}`` only with a ``key:`` block; a ``distractors:`` block only where look-alikes can be made."""
        if self.generator is not None and self.key is not None:
            raise FieldError("key", f"a {self.generator.kind} generator draws its own keys; remove key")
        templates = {"needle": self.needle, "question": self.question, "answer": self.answer}
        if self.distractors is not None:
            templates.update({f"distractors.variants[{i}]": t for i, t in enumerate(self.distractors.variants)})
        for name, text in templates.items():
            if text is None:
                continue
            fields = template_fields(text)
            # a multi-needle generator's look-alikes take its asked key (RULER's magic-number keys)
            keyed = self.key is not None or (name.startswith("distractors.") and isinstance(self.generator,
                                                                                          MultiNeedleGenerator))
            if not keyed and "key" in fields:
                raise FieldError(name, f"{text!r} uses {{key}}; only {{value}} is available without a `key:` block; "
                                       "add `key:` (drawn like value) or write {{ for a brace")
            if name.startswith("distractors.") and "value" not in fields:
                raise FieldError(name, f"{text!r} has no {{value}}; put {{value}} where the look-alike's value goes")
        if self.distractors is None:
            return
        if self.documents is not None:
            raise FieldError("distractors", "a documents task's distractors are its other documents "
                                            "(documents.total); remove distractors")
        if self.raw_prompt is not None and self.raw_prompt.needle_line:
            raise FieldError("raw_prompt", "needle_line puts one needle on a line of its own, and distractors "
                                           "place more; remove raw_prompt.needle_line")
        check_distractors(self.distractors, self.needle, self.key, self.value,
                          template_fields(self.needle) if self.needle else set(),
                          getattr(self.generator, "kind", None))

    @property
    def source_path(self) -> Path | None:
        """The YAML file this task was loaded from (None when built in code)."""
        return self._source_path

    @property
    def loaded_haystack(self) -> object:
        """The haystack source built when the task was loaded (None for a spec built in code)."""
        return self._haystack

    def keep_haystack(self, source: object) -> None:
        """Remember the haystack source built at load (``load_task_file`` calls it once)."""
        self._haystack = source

    @property
    def source_dir(self) -> Path:
        """Folder that a relative ``haystack.path`` is relative to (the task file's, else cwd)."""
        return self._source_path.parent if self._source_path is not None else Path.cwd()

    def content_hash(self) -> str:
        """16 hex chars of sha256 over the canonical JSON of the spec (part of every trial id).

        Covers the spec as written; for a ``files`` haystack that is the path, not the text in the files.
        """
        data = self.model_dump(mode="json")
        # unset optional keys: older tasks keep their hash (and their trial ids)
        for name in ("generator", "needle", "value", "question", "raw_prompt", "documents", "needle_variants", "key",
                     "distractors"):
            if data.get(name) is None:
                data.pop(name, None)
        for name, default in (("metric", "contains"), ("keyword_threshold", 0.6)):
            if data.get(name) == default:
                data.pop(name)
        if data.get("documents") and data["documents"].get("keep_self_answering"):
            # keeping them samples as before the option existed: older runs keep their hash; leaving them out
            # (the default) changes which question a sample asks, so that hash is a new one
            data["documents"].pop("keep_self_answering")
        text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


"""Typed values that cross module boundaries (see ARCHITECTURE.md for the flow).

configs -> EvalConfig -> [Trial]; tasks -> TaskSpec; Trial + TaskSpec + tokenizer -> BuiltPrompt;
BuiltPrompt -> backend -> TrialOutput; TrialOutput -> score -> TrialRecord -> run directory.

Positions are token indices into the final ``input_ids`` (after the chat template); every
name holding an offset says ``token`` or ``char``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# Region names of a built prompt, in prompt order. They tile [0, prompt_tokens) exactly.
REGION_PREAMBLE = "preamble"  # chat template head, system prompt, instructions
REGION_CONTEXT_BEFORE = "context_before"  # haystack before the needle
REGION_NEEDLE = "needle"
REGION_CONTEXT_AFTER = "context_after"  # haystack after the needle
REGION_QUESTION = "question"  # question, template tail, generation prompt, answer prefix
REGION_NAMES = (
    REGION_PREAMBLE,
    REGION_CONTEXT_BEFORE,
    REGION_NEEDLE,
    REGION_CONTEXT_AFTER,
    REGION_QUESTION,
)


@dataclass(frozen=True)
class Trial:
    """One cell sample of the grid: what to build and run. ``trial_id`` is stable for equal inputs."""

    trial_id: str
    model: str  # the model entry's name (alias, hub id or path) as written in the config
    task: str
    context_length: int  # requested total prompt tokens
    depth: float  # requested fraction of the haystack (in tokens) that precedes the needle
    sample: int  # 0-based sample index within the (model, task, length, depth) cell
    seed: int  # per-trial seed derived from the config seed and the trial's defining values
    control: str = ""  # "" for a placement trial, else "closed_book", "oracle" or "dummy_needle" (controls.py)
    layout: tuple[tuple[str, object], ...] = ()  # (axis, value) pairs that differ from the default layout
    mitigation: str = "none"  # the arm's name (config ``mitigations``); "none" is the baseline
    # context_unit: window: the fraction of the model's window that ``context_length`` is (None: a token config)
    context_fraction: float | None = None


# Why a finished trial's answer is what it is (``evalkit/failures.py`` holds the rules), in report order.
FAILURE_TYPES = ("correct", "distractor", "other_in_prompt", "absent", "partial", "format", "truncated")
# Where the answer step's attention went, where it was captured: the gold span, a look-alike, or neither.
ATTENTION_FOCUS = ("fact", "look_alike", "neither")


@dataclass(frozen=True)
class Distractor:
    """A look-alike of the needle (a task's ``distractors:`` block): the sentence, the value and key it carries.

    ``kind`` says how it differs from the needle: ``other_key`` (another key, another value: RULER's multikey),
    ``same_value`` (the gold value under another key) or ``variant`` (a near-miss template of the task file).
    """

    text: str
    value: str
    key: str = ""
    kind: str = ""


@dataclass(frozen=True)
class PlacedDistractor:
    """A distractor as placed in one prompt: its token span in the final input_ids and its depths."""

    text: str
    value: str
    key: str
    kind: str
    token_start: int
    token_end: int
    requested_depth: float
    achieved_depth: float


@dataclass(frozen=True)
class NeedleInstance:
    """A task's needle made concrete for one trial (value drawn from the trial seed)."""

    needle: str  # the sentence inserted into the haystack
    question: str
    answer: str  # gold answer text, as the model should produce it
    value: str  # the generated value (pass key, word, ...) the needle carries
    # multi-needle tasks (tasks/kinds.py): further sentences placed in the haystack at their own depths
    extra_needles: tuple[str, ...] = ()
    extra_depths: tuple[float, ...] = ()
    # values the answer must contain, in order of the needles carrying them; () = ``answer`` alone
    required_values: tuple[str, ...] = ()
    # which value each placed needle carries (main needle first, then extra_needles); for per-needle recall
    needle_values: tuple[str, ...] = ()
    facts: dict[str, object] = field(default_factory=dict)  # kind-specific facts recorded in ``extra``
    # every accepted form of the answer (NQ's aliases); () = ``answer`` alone
    answer_aliases: tuple[str, ...] = ()
    key: str = ""  # the drawn ``{key}`` of a task whose templates name one ("" for none)
    # look-alikes drawn for this seed, as many as the task's ``distractors.count`` (a layout may place fewer)
    distractors: tuple[Distractor, ...] = ()


@dataclass(frozen=True)
class PromptParts:
    """Text pieces the prompt builder assembles; produced from a TaskSpec for one trial."""

    instructions: str
    needle: str
    question: str
    answer_prefix: str  # text the assistant turn starts with ("" for none)
    system_prompt: str | None  # None: the template's default (if any)
    use_chat_template: bool
    # layout (evalkit/config/layouts.py): where the question and instructions go, text around the context
    question_position: str = "after"  # "after" the context, "before" it, or "both"
    instruction_position: str = "before"  # "before" or "after" the context
    context_open: str = ""  # text right before the context (e.g. "<document>"), in the preamble region
    context_close: str = ""  # text right after the context, in the question region
    # what completes a haystack of whole units to the exact length (evalkit/prompt/filler.py): "words" or
    # "json_member" (key-value objects, so the JSON stays valid)
    filler: str = "words"
    # template-off framing (TaskSpec.raw_prompt): block separator, question line, answer label, and whether the
    # first context piece keeps its joining space
    separator: str = "\n\n"
    question_format: str = "Question: {question}\n"
    answer_format: str = "Answer:"
    first_piece_space: bool = True
    needle_line: bool = False  # the needle on a line of its own: "\n{needle}\n" (the classic pass-key layout)
    chat_template_kwargs: tuple[tuple[str, object], ...] = ()  # passed to apply_chat_template (enable_thinking)


@dataclass(frozen=True)
class TokenSpan:
    """Half-open token interval ``[token_start, token_end)`` in the final input_ids."""

    token_start: int
    token_end: int

    @property
    def length(self) -> int:
        return self.token_end - self.token_start


@dataclass(frozen=True)
class BuiltPrompt:
    """A prompt in the model's own tokens with exact region spans.

    ``regions`` maps each name of REGION_NAMES to its span; the spans tile the prompt in order.
    """

    input_ids: tuple[int, ...]
    regions: dict[str, TokenSpan]
    needle_text: str
    requested_context_length: int
    length_tolerance_tokens: int  # |achieved - requested| allowed (0 = exact)
    requested_depth: float
    achieved_depth: float  # whole-unit tokens before the needle / whole-unit tokens (filler not counted)
    prompt_sha256: str  # hash of the input_ids, for determinism checks
    # spans of further needles (multi-needle tasks), in the order they were given; inside the context regions
    extra_needle_spans: tuple[TokenSpan, ...] = ()
    extra_needle_depths: tuple[float, ...] = ()  # achieved depth of each further needle
    # tokens of content-free filler that open the haystack so the prompt hits the exact length (0 = none)
    filler_tokens: int = 0
    # document tasks: each document's span in prompt order (they tile the context regions); () otherwise
    document_spans: tuple[TokenSpan, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return len(self.input_ids)

    @property
    def needle_span(self) -> TokenSpan:
        return self.regions[REGION_NEEDLE]


@dataclass(frozen=True)
class TrialOutput:
    """What the backend returns for one prompt (one forward over prompt + drafted answer serves all of it)."""

    generated_text: str
    generated_token_ids: tuple[int, ...]
    gold_token_ids: tuple[int, ...]
    gold_logprob_sum: float | None  # None: the backend cannot score the gold answer (``extra`` says why)
    gold_logprob_mean: float | None  # per gold token
    gold_first_token_is_argmax: bool
    elapsed_s: float
    # [layers, heads, rows, regions] attention mass, when capture is on (see models/capture.py)
    attention: object | None = None
    # what the backend adds to the record's ``extra`` (served: the server's prompt token count, a null's reason)
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """Answer scoring of one trial."""

    correct: bool  # the task's primary metric (``metric``) says the answer is right
    exact_match: bool  # normalised output (answer prefix stripped) equals normalised gold
    metric: str = "contains"  # which metric ``correct`` is (evalkit/scoring.py METRICS)
    # evalkit's lenient subspan EM (metric ``subspan_em``; the field keeps its older name, so old records read alike)
    best_subspan_em: bool | None = None
    keyword_recall: float | None = None  # share of the gold answer's content words in the output
    liu: bool | None = None  # Liu et al.'s best_subspan_em exactly as their code computes it (metric ``liu``)


@dataclass(frozen=True)
class TrialRecord:
    """One line of ``trials.jsonl``. Field names are the columns of ``load_results``.

    Every grid axis is a field (``control`` and the layout axes of ``evalkit/prompt/layouts.py``);
    ``extra`` holds only what one task kind adds (per-needle recall, facts). ``schema_version`` is the
    run-directory format's (``evalkit/store/format.py``, which also reads the older schema).
    """

    trial_id: str
    status: str  # "ok" or "skipped"
    model: str
    model_revision: str
    task: str
    context_length: int
    prompt_tokens: int
    length_tolerance_tokens: int
    depth: float
    achieved_depth: float | None  # None: skipped trial
    sample: int
    seed: int
    needle: str
    question: str
    gold_answer: str
    generated: str
    correct: bool
    exact_match: bool
    gold_logprob_sum: float | None  # None: skipped trial
    gold_logprob_mean: float | None
    gold_first_token_is_argmax: bool
    gold_tokens: int
    regions: dict[str, list[int]]  # name -> [token_start, token_end]
    needle_token_start: int
    needle_token_end: int
    prompt_sha256: str
    elapsed_s: float
    skip_reason: str = ""
    # grid axes: the control kind ("" for a placement trial) and the prompt layout (see Layout)
    control: str = ""
    question_position: str = "after"
    instruction_position: str = "before"
    chat_template: bool | None = None
    system_prompt: bool | None = None
    context_markers: str = "none"
    answer_prefix: bool = True
    # the mitigation arm (config ``mitigations``) and what it cost beyond the baseline's one pass
    mitigation: str = "none"
    extra_forwards: int = 0  # model forwards the arm added (a first pass, a calibration probe)
    extra_prompt_tokens: int = 0  # prompt tokens those forwards read
    # document tasks (doc_qa): the gold document's 0-based index among the documents, and how many there are
    gold_document_index: int | None = None
    documents_total: int | None = None
    document_spans: list | None = None  # [[token_start, token_end], ...] of each document, in prompt order
    # scoring: which metric ``correct`` is, and the other metrics where the task computes them
    metric: str = "contains"
    best_subspan_em: bool | None = None  # the lenient ``subspan_em`` (its older name; evalkit/scoring.py)
    keyword_recall: float | None = None
    liu: bool | None = None  # Liu et al.'s exact metric (None in records written before it existed)
    # content axes (config ``layout:``): distractors placed (None: the task's count), haystack order, needle variant
    distractor_count: int | None = None
    haystack_order: str = "coherent"
    needle_variant: str | None = None
    # the placed look-alikes: [{"text", "value", "key", "kind", "token_start", "token_end", "requested_depth",
    # "achieved_depth"}, ...] (``PlacedDistractor`` fields), in the order drawn; None when none were placed
    distractors: list | None = None
    # the needle's similarity to the question, measured: share of the question's content words in the needle,
    # and the needle's BM25 score against the question
    question_overlap: float | None = None
    question_bm25: float | None = None
    # why the answer is what it is (FAILURE_TYPES; "" for a skipped trial or a record from before it existed);
    # for a ``distractor`` answer, the index of the look-alike answered (into ``distractors``, or the document's
    # 0-based position for a documents task)
    failure: str = ""
    failure_distractor: int | None = None
    attention_focus: str | None = None  # ATTENTION_FOCUS where attention was captured, else None
    # context_unit: window: the fraction of the model's window that ``context_length`` is (None: a token config,
    # or a record written before the option)
    context_fraction: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    schema_version: int = 2


@dataclass(frozen=True, eq=False)
class TrialAttention:
    """One trial's captured attention: the arrays of its ``attention/<trial_id>.npz`` (numpy; shapes and meaning
    in ``evalkit/store/format.py``, which writes and reads them)."""

    mass: np.ndarray
    remainder: np.ndarray
    argmax_position: np.ndarray
    argmax_token: np.ndarray
    row_token: np.ndarray
    row_in_needle: np.ndarray
    region_names: tuple[str, ...]
    spans: np.ndarray
    bins: int
    prompt_tokens: int
    token_mass: np.ndarray | None = None  # float16 [stored layers, rows, prompt_tokens], attention.tokens only
    token_layers: tuple[int, ...] = ()
    documents: int = 0  # document tasks: the ``documents`` regions after the bins are the documents (doc_00 ...)
    distractors: int = 0  # the last ``distractors`` regions are the placed look-alikes (distractor_00 ...)

    @property
    def partition_size(self) -> int:
        """How many leading regions tile the keys (the bins, documents and distractors overlap them)."""
        return len(self.region_names) - self.bins - self.documents - self.distractors

    @property
    def bin_slice(self) -> slice:
        """Where the bins are along the regions axis."""
        return slice(self.partition_size, self.partition_size + self.bins)

    @property
    def document_slice(self) -> slice:
        """Where the document regions are along the regions axis (empty for a task without documents)."""
        start = self.partition_size + self.bins
        return slice(start, start + self.documents)

    @property
    def distractor_slice(self) -> slice:
        """Where the placed look-alikes' regions are along the regions axis (empty for a trial without them)."""
        return slice(len(self.region_names) - self.distractors, len(self.region_names))

    def region(self, name: str) -> np.ndarray:
        """Mass on region ``name``: [layers, heads, rows]."""
        return self.mass[..., self.region_names.index(name)]

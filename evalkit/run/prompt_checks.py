"""Checks, before anything is written, that every requested prompt can be built in each model's tokens.

``evalkit validate`` and ``evalkit run`` call ``check_prompts_fit`` after the model limits are known
and before the run directory exists, so a needle longer than the context or a haystack file too
small for the longest context is refused with the numbers, not found half-way through a run.
Only the tokenizer of each model is loaded (no weights).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from evalkit.config.resolved_lengths import ContextLengths, token_lengths
from evalkit.config.layouts import Layout
from evalkit.config.mitigations import DOCUMENT_ATTENTION_ARMS
from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.errors import ConfigError, HaystackError, PlacementError, TaskError
from evalkit.models import load_tokenizer
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.controls import build_trial_prompt
from evalkit.prompt.reorder import REORDER_ARM
from evalkit.run.plan import sample_seeds, trial_seed
from evalkit.run.preflight import PreparedTask
from evalkit.scoring import WHOLE_LINE_METRICS
from evalkit.tasks.haystacks import FileHaystack
from evalkit.tasks.variants import with_variant
from evalkit.types import PromptParts, Trial

log = logging.getLogger(__name__)


# the budget Liu et al. give the line a whole-line metric reads (their code: 100)
WHOLE_LINE_BUDGET = 100


def short_line_budgets(config: EvalConfig, config_path: str | Path, tasks: Mapping[str, PreparedTask]) -> list[str]:
    """One warning per (model, task) whose metric reads the whole first line while ``max_new_tokens`` is below
    ``WHOLE_LINE_BUDGET``: generation may stop before the line ends, and a right answer is then scored wrong."""
    notes = []
    for index, model_cfg in enumerate(config.models):
        for name, task in tasks.items():
            if task.spec.metric in WHOLE_LINE_METRICS and model_cfg.max_new_tokens < WHOLE_LINE_BUDGET:
                notes.append(f"{config_path}: models[{index}].max_new_tokens: {model_cfg.max_new_tokens} tokens may "
                             f"cut task {name}'s answers before their line ends ({task.spec.metric} reads the whole "
                             f"first line; Liu et al. allow {WHOLE_LINE_BUDGET}): set max_new_tokens to "
                             f"{WHOLE_LINE_BUDGET}, or expect truncated answers (the report counts them)")
    return notes


def warn_short_line_budgets(config: EvalConfig, config_path: str | Path, tasks: Mapping[str, PreparedTask]) -> None:
    """Log each of ``short_line_budgets``' warnings (``run``; ``validate`` prints them after its ok line)."""
    for note in short_line_budgets(config, config_path, tasks):
        log.warning("%s", note)


def check_prompts_fit(config: EvalConfig, config_path: str | Path, tasks: Mapping[str, PreparedTask],
                      lengths: ContextLengths | None = None) -> None:
    """Raise ``ConfigError`` naming the file, field and numbers when some trial's prompt cannot be built.

    For every model and task: the fixed parts (template, instructions, needle, question) of every
    sample's needle must fit the smallest context length, every sample's gold answer must fit the
    model's ``max_new_tokens`` (see ``check_answer_budget``), and a ``files`` haystack must hold at
    least as many distinct tokens as the longest context length needs (evalkit never repeats or
    truncates silently). ``lengths``: each model's lengths in tokens (``preflight.model_limits``; a token
    config may leave it out).
    """
    lengths = lengths or token_lengths(config)
    for index, model_cfg in enumerate(config.models):
        tokenizer = load_tokenizer(model_cfg)
        _check_chat_template(config, config_path, index, tokenizer)
        builder = PromptBuilder(tokenizer)
        view = lengths.config_for(config, model_cfg.label)  # this model's lengths in its tokens (seeds: config's)
        for task_index, (name, task) in enumerate(tasks.items()):  # in the config's order
            where = f"(task {name}, model {model_cfg.label})"
            if task.spec.documents is not None:
                check_document_prompts(builder, view, config_path, task, model_cfg, index, task_index)
                continue
            _check_arms_apply(config, config_path, name, task.spec)
            _check_distractor_counts(builder, view, config_path, task, model_cfg, where)
            samples = _measure_samples(builder, config, config_path, task, model_cfg, where)
            check_answer_budget(samples.gold_tokens, samples.gold_answer, model_cfg, index, name, config_path,
                                stop_tokens=1 if getattr(builder.tokenizer, "eos_token_id", None) is not None else 0)
            fixed_tokens = _largest_fixed_part(builder, view, config_path, samples.longest_needle_parts, where)
            _check_file_haystack(builder, view, config_path, task, fixed_tokens, where)


def check_document_prompts(builder: PromptBuilder, config: EvalConfig, config_path: str | Path, task: PreparedTask,
                           model_cfg: ModelConfig, model_index: int, task_index: int | None = None) -> None:
    """Every sample of a documents task: its question exists, its documents fit the smallest context length
    (the gold first; other positions differ by a few tokens at most, and a trial that does not fit is refused
    then), and its gold answer fits ``max_new_tokens``. ``task_index`` (the task's place in ``tasks``) is named
    in an error about the task file's own fields."""
    name, smallest = task.spec.name, min(config.context_lengths)
    controls = ("",) if "dummy_needle" not in config.controls else ("", "dummy_needle")
    longest = (0, "")
    for sample in range(config.samples):
        for control in controls:
            trial = Trial("", model_cfg.label, name, smallest, 0.0, sample, trial_seed(config.seed, name, sample),
                          control, config.layout.layouts()[0].id_pairs())
            try:
                built = build_trial_prompt(builder, task, trial, model_cfg, config)
            except (PlacementError, TaskError) as err:
                raise ConfigError(f"{config_path}: {_document_error_field(task, task_index, err, control)}: {err} "
                                  f"(task {name}, model {model_cfg.label}, sample {sample})") from None
            if built.gold_ids is not None and len(built.gold_ids) > longest[0]:
                longest = (len(built.gold_ids), built.needle.answer)
    check_answer_budget(longest[0], longest[1], model_cfg, model_index, name, config_path,
                        stop_tokens=1 if getattr(builder.tokenizer, "eos_token_id", None) is not None else 0)


def _document_error_field(task: PreparedTask, task_index: int | None, err: Exception, control: str) -> str:
    """Where a documents trial that cannot be built is fixed: the control, a task file field, samples or lengths."""
    if control:
        return "controls"
    if isinstance(err, TaskError) and err.task_field is not None:
        # the task file's own field (documents.total), not the config's samples
        entry = f"tasks[{task_index}]: " if task_index is not None else ""
        return f"{entry}{task.spec.source_path or task.spec.name}: {err.task_field}"
    return "samples" if isinstance(err, TaskError) else "context_lengths"


def _check_arms_apply(config: EvalConfig, config_path: str | Path, task_name: str, spec: Any) -> None:
    """Refuse an arm that acts on documents on a task without documents (it would change nothing), and
    reordering a multi-needle task (which of its needles would move where is not defined)."""
    multi_needle = getattr(spec.generator, "needles", 0) > 1
    for index, arm in enumerate(config.mitigations):
        if arm.arm == REORDER_ARM and multi_needle:
            raise ConfigError(f"{config_path}: mitigations[{index}]: reorder_by_relevance is not defined for the "
                              f"multi-needle task {task_name}; drop this arm or use a single-needle task")
        if arm.arm == REORDER_ARM and spec.distractors is not None:
            raise ConfigError(f"{config_path}: mitigations[{index}]: reorder_by_relevance would move the look-alikes "
                              f"of task {task_name} (its distractors: block) with the haystack; drop this arm or "
                              "the task's distractors block")
        if arm.arm in DOCUMENT_ATTENTION_ARMS:
            act = "calibrates attention per document" if arm.arm == "calibrate_attention" else "sorts documents"
            raise ConfigError(f"{config_path}: mitigations[{index}]: {arm.arm} {act}, but task "
                              f"{task_name} has none; use a documents task (documents: block) or drop this arm")


def _check_distractor_counts(builder: PromptBuilder, config: EvalConfig, config_path: str | Path, task: PreparedTask,
                             model_cfg: ModelConfig, where: str) -> None:
    """Every count of ``layout.distractor_count`` can be placed (a distractors: block, depths and draws enough for
    it, room at the smallest length): one prompt of sample 0 per count, so a run does not fail on its first trial."""
    if task.spec.distractors is None and not any(config.layout.distractor_count):
        return
    name, smallest = task.spec.name, min(config.context_lengths)
    for count in config.layout.distractor_count:
        trial = Trial("", model_cfg.label, name, smallest, config.depths[0], 0, trial_seed(config.seed, name, 0), "",
                      Layout(distractor_count=count).id_pairs())
        try:
            build_trial_prompt(builder, task, trial, model_cfg, config)
        except (PlacementError, TaskError, HaystackError) as err:
            raise ConfigError(f"{config_path}: layout.distractor_count: {count}: {err} {where}") from None


def _check_chat_template(config: EvalConfig, config_path: str | Path, index: int, tokenizer: Any) -> None:
    """A model whose prompts use the chat template needs a tokenizer that has one; name the field that asks."""
    if getattr(tokenizer, "chat_template", None):
        return
    model_cfg = config.models[index]
    settings = [layout.chat_template for layout in config.layout.layouts()]  # None: the model entry's setting
    if model_cfg.chat_template and None in settings:
        raise ConfigError(
            f"{config_path}: models[{index}].chat_template: true, but the tokenizer of {model_cfg.name} has no chat "
            f"template; set models[{index}].chat_template: false (prompts are then plain text)"
        )
    if True in settings:
        raise ConfigError(
            f"{config_path}: layout.chat_template: lists true, but the tokenizer of {model_cfg.name} "
            f"(models[{index}]) has no chat template; remove true from layout.chat_template"
        )


def check_answer_budget(gold_tokens: int, gold_answer: str, model_cfg: ModelConfig, model_index: int, task: str,
                        config_path: str | Path, stop_tokens: int = 1) -> None:
    """ConfigError unless ``max_new_tokens`` holds the longest gold answer plus its stop token.

    The answer prefix ends the prompt, so the model does not have to generate it; ``gold_tokens`` are the gold
    answer's ids as they follow the prefix. A budget below that can never score the trial correct (the answer
    is cut off), so it is refused instead of run.
    """
    needed = gold_tokens + stop_tokens
    if model_cfg.max_new_tokens < needed:
        stop = f" plus {stop_tokens} stop token" if stop_tokens else ""
        raise ConfigError(
            f"{config_path}: models[{model_index}].max_new_tokens: {model_cfg.max_new_tokens} tokens cannot hold "
            f"task {task}'s gold answer, {gold_tokens} tokens in {model_cfg.name}'s tokenizer ({_clip(gold_answer)})"
            f"{stop}; set max_new_tokens to at least {needed}"
        )


@dataclass(frozen=True)
class _SampleSizes:
    """What the samples of one task need: the parts of the longest needle, the longest gold answer."""

    longest_needle_parts: PromptParts
    gold_tokens: int
    gold_answer: str


def _measure_samples(
    builder: Any, config: EvalConfig, config_path: str | Path, task: PreparedTask, model_cfg: ModelConfig, where: str
) -> _SampleSizes:
    """The longest needle and the longest gold answer over the config's samples (gold ids must round-trip)."""
    longest_needle: tuple[int, Any] | None = None
    longest_gold: tuple[int, str] = (0, "")
    # under values: per_trial each cell of a sample draws its own value: every one is checked
    for seed in (seed for sample in range(config.samples) for seed in sample_seeds(config, task.spec.name, sample)):
        parts, needle = task.parts_for(seed=seed, model_cfg=model_cfg)
        try:
            gold_tokens = len(builder.gold_continuation_ids(parts, needle.answer))
        except PlacementError as err:
            raise ConfigError(f"{config_path}: tasks: {err} {where}") from None
        if gold_tokens > longest_gold[0]:
            longest_gold = (gold_tokens, needle.answer)
        for variant in config.layout.needle_variant:  # every wording the grid places (None: the task's needle)
            text = with_variant(task.spec, needle, variant).needle
            needle_tokens = len(builder.fragment_ids(text))  # the frame is the same for every sample
            if longest_needle is None or needle_tokens > longest_needle[0]:
                longest_needle = (needle_tokens, dataclasses.replace(parts, needle=text))
    assert longest_needle is not None  # samples >= 1
    return _SampleSizes(longest_needle[1], *longest_gold)


def _clip(text: str, limit: int = 40) -> str:
    return repr(text) if len(text) <= limit else repr(text[: limit - 1] + "…")


def _largest_fixed_part(
    builder: Any, config: EvalConfig, config_path: str | Path, parts: PromptParts, where: str
) -> int:
    """Tokens taken by everything but the haystack, for the sample with the longest needle (``parts``)."""
    smallest = min(config.context_lengths)
    # a stand-in haystack: only the fixed parts are measured here
    try:
        # "The end." keeps its token count with or without the joining space (raw_prompt.first_piece_space)
        prompt = builder.build_prompt(parts, iter(["The end."] * (smallest + 1)), smallest, 0.0,
                                      config.length_tolerance_tokens)
    except (PlacementError, HaystackError) as err:
        raise ConfigError(f"{config_path}: context_lengths: {err} {where}") from None
    haystack_tokens = prompt.regions["context_before"].length + prompt.regions["context_after"].length
    fixed_tokens = prompt.prompt_tokens - haystack_tokens
    if config.length_tolerance_tokens >= smallest - fixed_tokens:
        # within the tolerance the builder may stop short: at this size the haystack could be empty
        raise ConfigError(
            f"{config_path}: length_tolerance_tokens: {config.length_tolerance_tokens} is not below the "
            f"{smallest - fixed_tokens} haystack tokens of context_length {smallest} (template, needle and "
            f"question take {fixed_tokens}), so a prompt could hold no haystack; use a tolerance below "
            f"{smallest - fixed_tokens} {where}"
        )
    return fixed_tokens


def _check_file_haystack(
    builder: Any, config: EvalConfig, config_path: str | Path, task: PreparedTask, fixed_tokens: int, where: str
) -> None:
    """A ``files`` haystack must hold the haystack tokens of the longest context without repeating."""
    if not isinstance(task.haystack, FileHaystack):
        return  # the generated haystack is endless
    longest = max(config.context_lengths)
    needed_tokens = longest - fixed_tokens
    have_tokens = 0
    for sentence in task.haystack.units:  # without the sentences left out for holding values of the needle's kind
        have_tokens += len(builder.fragment_ids(sentence))
        if have_tokens >= needed_tokens:
            return
    files = ", ".join(str(p) for p in task.haystack.files)
    raise ConfigError(
        f"{config_path}: context_lengths: context_length {longest} needs {needed_tokens} haystack tokens but the "
        f"haystack files ({files}) hold only {have_tokens} {where}; add text to them or use context lengths "
        f"up to {have_tokens + fixed_tokens}"
    )

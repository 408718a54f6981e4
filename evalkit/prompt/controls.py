"""What prompt a trial gets: its layout, its control kind, its further needles; and what its record adds.

Controls (config ``controls:``) separate retrieval from guessing:

- ``closed_book``: the same question over haystack of the same length with no needle (guessing and
  leakage; the ``needle`` region is empty);
- ``oracle``: the needle (all needles of a multi-needle task) and the question with no haystack (the ceiling);
  once per sample, its record in the grid's largest length (``prompt_tokens`` is its own length);
- ``dummy_needle``: a content-free sentence of exactly the needle's token length in the needle's place
  (same haystack, same position), so its attention mass is the baseline of Hsieh et al. 2024 (Found in
  the Middle): needle mass minus dummy mass by position. Its span is the ``needle`` region.

Records carry the trial's grid axes as fields (``record_axes``: ``control``, the layout axes, the window fraction);
reports keep control trials out of the depth tables.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any

from evalkit.errors import PlacementError
from evalkit.prompt.builder import PromptBuilder
from evalkit.prompt.distractors import distractor_depths, distractors_to_place, split_distractors
from evalkit.prompt.document_trials import build_document_trial
from evalkit.prompt.haystack_check import CandidateFilter, check_haystack_clean
from evalkit.prompt.layouts import Layout, apply_layout
from evalkit.prompt.reorder import REORDER_ARM, arm_kind, reorder_pieces
from evalkit.prompt.shuffle import haystack_arranger
from evalkit.prompt.similarity import prompt_similarity
from evalkit.tasks.needles import answer_candidates, distractor_pool
from evalkit.tasks.variants import with_variant
from evalkit.tasks.values import answer_value_pattern
from evalkit.scoring import score_with_aliases, values_found
from evalkit.prompt.trial_prompt import TrialPrompt
from evalkit.types import BuiltPrompt, PromptParts, Score, Trial

# content-free words (no digits, no nouns a task asks about); several lists so some length always fits
_DUMMY_WORDS: tuple[tuple[str, ...], ...] = (
    ("It", "was", "just", "as", "it", "had", "been", "before", "and", "so", "it", "went", "on"),
    ("Nothing", "in", "particular", "happened", "then", "and", "that", "was", "all", "there", "was"),
    ("And", "so", "on", "and", "so", "forth", "as", "usual"),
)


def record_axes(trial: Trial) -> dict[str, Any]:
    """The trial's grid axes as TrialRecord fields: ``control``, every layout axis and the fraction of the model's
    window its length is (``context_unit: window``; None otherwise)."""
    return {"control": trial.control, **Layout.from_pairs(trial.layout).axes(),
            "context_fraction": trial.context_fraction}


def dummy_sentence(builder: PromptBuilder, target_tokens: int) -> str:
    """A content-free sentence whose placed ids are exactly ``target_tokens`` long (PlacementError if none)."""
    for words in _DUMMY_WORDS:
        for n in range(1, target_tokens + 2):
            text = " ".join(itertools.islice(itertools.cycle(words), n)) + "."
            tokens = len(builder.fragment_ids(text))
            if tokens == target_tokens:
                return text
            if tokens > target_tokens:
                break
    raise PlacementError(f"no content-free sentence of {target_tokens} tokens found for this tokenizer; "
                         "drop dummy_needle from controls or use a needle of another length")


def build_trial_prompt(builder: PromptBuilder, task: Any, trial: Trial, model_cfg: Any, config: Any,
                       order: Any = None, content_free: str | None = None) -> TrialPrompt:
    """Parts (task, model entry, layout), needle and prompt of ``trial``; ``task`` is a PreparedTask.
    ``order`` (documents tasks): the documents' new order as indices into the trial's own order;
    ``content_free``: every document replaced by this text at about its length (a calibration probe)."""
    pattern = answer_value_pattern(task.spec)  # how the record's failure type reads the answer's values
    if task.spec.documents is not None:
        built = build_document_trial(builder.tokenizer, task, trial, model_cfg, config, order, content_free)
        return dataclasses.replace(built, value_pattern=pattern)
    parts, needle = task.parts_for(seed=trial.seed, model_cfg=model_cfg)
    layout = Layout.from_pairs(trial.layout)
    needle = with_variant(task.spec, needle, layout.needle_variant)  # same value, another wording
    parts = apply_layout(dataclasses.replace(parts, needle=needle.needle), layout, model_cfg.system_prompt)
    # look-alikes go in after the task's own further needles (distractors.py)
    distractors = distractors_to_place(task.spec, needle, layout.distractor_count, trial.seed, trial.control)
    depths = distractor_depths(task.spec.distractors, len(distractors), trial.depth) if distractors else []
    extras = [*zip(needle.extra_needles, needle.extra_depths), *((d.text, x) for d, x in zip(distractors, depths))]
    extra: dict[str, Any] = dict(needle.facts)
    # units that mention the answer (or the asked key or entity, or any look-alike's value) never enter the haystack
    candidates = (*answer_candidates(needle), *(d.value for d in distractor_pool(task.spec, needle, trial.seed)))
    units = CandidateFilter(task.sentences(trial.seed), candidates)
    parts, prompt = _placed_prompt(builder, parts, units, trial, config, extras, extra,
                                   haystack_arranger(layout.haystack_order, trial.seed))
    check_haystack_clean(builder.tokenizer, prompt, candidates)
    prompt, placed = split_distractors(builder.tokenizer, prompt, distractors, depths)
    if units.dropped:
        extra["haystack_units_dropped"] = units.dropped
    if getattr(task.haystack, "dropped_sentences", 0):  # a files or dataset haystack: values of the needle's kind
        extra["haystack_sentences_dropped"] = task.haystack.dropped_sentences
    if prompt.filler_tokens:
        extra["filler_tokens"] = prompt.filler_tokens
    # the needle's measured similarity to the question, where the prompt holds the needle
    similarity = (prompt_similarity(builder.tokenizer, prompt, needle.question)
                  if trial.control in ("", "oracle") else None)
    if "entity" in needle.facts and not trial.control:  # doc_qa: the gold document's index among the documents
        return TrialPrompt(parts, needle, prompt, extra, *_document_position(builder, prompt), similarity=similarity,
                           distractors=placed, value_pattern=pattern)
    return TrialPrompt(parts, needle, prompt, extra, similarity=similarity, distractors=placed,
                       value_pattern=pattern)


def _placed_prompt(builder: PromptBuilder, parts: PromptParts, units: CandidateFilter, trial: Trial, config: Any,
                   extras: list[tuple[str, float]], extra: dict[str, Any],
                   arrange: Any) -> tuple[PromptParts, BuiltPrompt]:
    """The parts (a dummy needle's) and the prompt of ``trial``'s control kind; ``extra`` gets the dummy sentence;
    ``arrange`` puts the haystack in its order (``prompt/shuffle.py``)."""
    tolerance = config.length_tolerance_tokens
    if trial.control == "closed_book":
        return parts, builder.build_without_needle(parts, units, trial.context_length, tolerance, arrange=arrange)
    if trial.control == "oracle":
        # no haystack: the prompt is exactly the fixed parts, needles in their order of depth
        length = builder.fixed_tokens(parts) + sum(len(builder.fragment_ids(text)) for text, _ in extras)
        return parts, builder.build_prompt(parts, iter(()), length, 0.0, 0, extra_needles=extras)
    if trial.control == "dummy_needle":
        dummy = dummy_sentence(builder, len(builder.fragment_ids(parts.needle)))
        parts = dataclasses.replace(parts, needle=dummy)
        extra["dummy"] = dummy
    reorder = None
    if arm_kind(config, trial) == REORDER_ARM:  # the needle moves with its score; the depth stays the pairing key
        reorder = functools.partial(reorder_pieces, builder.tokenizer, parts.question)
    return parts, builder.build_prompt(parts, units, trial.context_length, trial.depth, tolerance,
                                       extra_needles=extras, reorder=reorder, arrange=arrange)


def _document_position(builder: PromptBuilder, prompt: BuiltPrompt) -> tuple[int, int]:
    """Whole documents before the gold one (its 0-based index) and in all (the haystack holds whole documents)."""
    def titles(region: str) -> int:
        span = prompt.regions[region]
        return builder.tokenizer.decode(list(prompt.input_ids[span.token_start : span.token_end])).count("(Title: ")

    before = titles("context_before")
    return before, before + 1 + titles("context_after")


def score_trial(generated: str, built: TrialPrompt) -> tuple[Score, dict[str, Any]]:
    """The answer's score and what the record adds: per-needle recall and depths for multi-needle tasks.

    With ``required_values`` a trial is correct only when every required value is in the answer;
    ``extra["recall"]`` is the share found (partial credit).
    """
    needle = built.needle
    score = score_with_aliases(generated, needle.answer_aliases or (needle.answer,), built.parts.answer_prefix,
                               built.metric, built.keyword_threshold)
    extra: dict[str, Any] = {}
    if needle.required_values:
        found = values_found(generated, needle.required_values)
        extra["recall"] = sum(found) / len(found)
        score = dataclasses.replace(score, correct=all(found))
    if needle.needle_values:
        prompt = built.prompt
        depths = [prompt.achieved_depth, *prompt.extra_needle_depths]
        hits = values_found(generated, needle.needle_values)
        required = set(needle.required_values or (needle.value,))
        extra["needles"] = [
            {"value": value, "required": value in required, "found": hit, "achieved_depth": depth}
            for value, hit, depth in zip(needle.needle_values, hits, depths)
        ]
    return score, extra

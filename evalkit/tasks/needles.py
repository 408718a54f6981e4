"""Needle values: draw a task's ``value`` (and ``key``) for one trial seed, fill the task's templates, and draw the
needle's look-alikes (a ``distractors:`` block).

The same seed always gives the same value; the generated haystack never uses these words or any digit,
so a needle value appears in the prompt only where the needle puts it.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from typing import TYPE_CHECKING

from evalkit.tasks.distractor_spec import value_capacity
from evalkit.tasks.distractors import LookAlikeSource, draw_distractors, pool_size
from evalkit.tasks.kinds import MAGIC_TEMPLATE, generate
from evalkit.tasks.spec import (
    ChoiceValue,
    FixedValue,
    IntegerValue,
    KvGenerator,
    MultiNeedleGenerator,
    TaskSpec,
    UuidValue,
    WordValue,
)
from evalkit.tasks.words import WORDS
from evalkit.types import Distractor, NeedleInstance, PromptParts

if TYPE_CHECKING:
    from evalkit.config.schema import ModelConfig

# closes the key-value object after the last pair's comma: a member no question asks about
KV_CONTEXT_CLOSE = '"end": null}'


def draw_value(spec: IntegerValue | ChoiceValue | WordValue | UuidValue | FixedValue, rng: random.Random) -> str:
    """One value of a value spec, drawn from ``rng`` (a fixed value draws nothing)."""
    if isinstance(spec, FixedValue):
        return spec.value
    if isinstance(spec, IntegerValue):
        return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(spec.digits - 1))
    if isinstance(spec, ChoiceValue):
        return rng.choice(spec.values)
    if isinstance(spec, WordValue):
        return rng.choice(WORDS)
    if isinstance(spec, UuidValue):
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))
    raise TypeError(f"unknown value spec {type(spec).__name__}")


def instantiate_needle(task: TaskSpec, seed: int) -> NeedleInstance:
    """The task's needle, question and answer for one trial seed (same seed, same value)."""
    # a string seed is hashed with sha512 by `random`: stable across processes and PYTHONHASHSEED
    if task.generator is not None:
        needle = generate(task.generator, seed)
    else:
        rng = random.Random(f"evalkit.needle:{seed}")
        value = draw_value(task.value, rng)
        key = draw_value(task.key, rng) if task.key is not None else ""  # after the value: older values stay
        needle = NeedleInstance(
            needle=task.needle.format(value=value, key=key),
            question=task.question.format(value=value, key=key),
            answer=task.answer.format(value=value, key=key),
            value=value,
            key=key,
        )
    if task.distractors is None or not task.distractors.count:
        return needle
    return dataclasses.replace(needle, distractors=distractors_for(task, needle, seed, task.distractors.count))


def look_alike_source(task: TaskSpec, needle: NeedleInstance) -> LookAlikeSource:
    """What ``needle``'s look-alikes are made from: the task's templates and draws, or RULER's magic numbers."""
    if isinstance(task.generator, MultiNeedleGenerator):
        digits = IntegerValue(kind="integer", digits=task.generator.digits)
        keys = tuple(needle.facts.get("keys", ()))
        return LookAlikeSource(
            template=MAGIC_TEMPLATE, gold_key=keys[0], gold_value=needle.value,
            draw_key=lambda rng: rng.choice(WORDS), draw_value=lambda rng: draw_value(digits, rng),
            taken_keys=keys, taken_values=needle.needle_values, key_capacity=len(WORDS),
            value_capacity=value_capacity(digits))
    key_spec, value_spec = task.key, task.value
    return LookAlikeSource(
        template=task.needle, gold_key=needle.key, gold_value=needle.value,
        draw_key=(lambda rng: draw_value(key_spec, rng)) if key_spec is not None else None,
        draw_value=lambda rng: draw_value(value_spec, rng),
        taken_keys=(needle.key,), taken_values=(needle.value,),
        key_capacity=value_capacity(key_spec) if key_spec is not None else 1, value_capacity=value_capacity(value_spec))


def distractors_for(task: TaskSpec, needle: NeedleInstance, seed: int, count: int) -> tuple[Distractor, ...]:
    """The first ``count`` look-alikes of ``needle`` for trial ``seed`` (the same first ones for any count)."""
    if task.distractors is None:
        return ()
    return draw_distractors(task.distractors, look_alike_source(task, needle), seed, count)


def distractor_pool(task: TaskSpec, needle: NeedleInstance, seed: int) -> tuple[Distractor, ...]:
    """Every look-alike trial ``seed`` could place (up to MAX_DISTRACTORS): the haystack holds none of their values
    whatever count a layout places, so trials that differ only in the count share their haystack."""
    if task.distractors is None:
        return ()
    source = look_alike_source(task, needle)
    return draw_distractors(task.distractors, source, seed, pool_size(task.distractors, source))


def answer_candidates(needle: NeedleInstance) -> tuple[str, ...]:
    """Texts that must appear in a prompt only inside its needles: the gold answer, every value a needle carries,
    and what names the asked fact where the kind tells it (the key of a key-value pair, the entity of a doc_qa
    question), so the haystack can neither answer the question nor hold a second answer to it."""
    texts = [needle.answer, needle.value, *needle.required_values, *needle.needle_values, needle.key]
    texts += [str(needle.facts[name]) for name in ("key", "entity") if needle.facts.get(name)]
    if needle.required_values:  # "v1, v2, v3" is never one text; its parts are listed above
        texts.remove(needle.answer)
    unique = dict.fromkeys(t.strip() for t in texts if t.strip())
    return tuple(unique)


def _raw_prompt_fields(task: TaskSpec) -> dict[str, object]:
    """The template-off framing of ``task.raw_prompt`` as PromptParts fields (none: the defaults)."""
    raw = task.raw_prompt
    if raw is None:
        return {}
    return {"separator": raw.separator, "question_format": raw.question_format,
            "answer_format": raw.answer_format, "first_piece_space": raw.first_piece_space,
            "needle_line": raw.needle_line}


def prompt_parts(task: TaskSpec, needle: NeedleInstance, model_cfg: ModelConfig) -> PromptParts:
    """Text pieces for the prompt builder; system prompt and chat-template use come from the model entry."""
    return PromptParts(
        instructions=task.instructions,
        needle=needle.needle,
        question=needle.question,
        answer_prefix=task.answer_prefix,
        system_prompt=model_cfg.system_prompt,
        use_chat_template=model_cfg.chat_template,
        chat_template_kwargs=tuple(sorted(model_cfg.chat_template_kwargs.items())),
        **_raw_prompt_fields(task),
        # key-value retrieval: the pairs form one JSON object; every pair ends in a comma, so a closing member
        # keeps it valid JSON, and the filler that makes the exact length is a member too
        **({"context_open": "{", "context_close": KV_CONTEXT_CLOSE, "filler": "json_member"}
           if isinstance(task.generator, KvGenerator) else {}),
    )

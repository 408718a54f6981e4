"""Needle values: draw a task's ``value`` for one trial seed and fill the task's templates.

The same seed always gives the same value; the generated haystack never uses these words or any digit,
so a needle value appears in the prompt only where the needle puts it.
"""

from __future__ import annotations

import random
import uuid
from typing import TYPE_CHECKING

from evalkit.tasks.kinds import generate
from evalkit.tasks.spec import (
    ChoiceValue,
    FixedValue,
    IntegerValue,
    KvGenerator,
    TaskSpec,
    UuidValue,
    WordValue,
)
from evalkit.tasks.words import WORDS
from evalkit.types import NeedleInstance, PromptParts

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
        return generate(task.generator, seed)
    rng = random.Random(f"evalkit.needle:{seed}")
    value = draw_value(task.value, rng)
    return NeedleInstance(
        needle=task.needle.format(value=value),
        question=task.question.format(value=value),
        answer=task.answer.format(value=value),
        value=value,
    )


def answer_candidates(needle: NeedleInstance) -> tuple[str, ...]:
    """Texts that must appear in a prompt only inside its needles: the gold answer, every value a needle carries,
    and what names the asked fact where the kind tells it (the key of a key-value pair, the entity of a doc_qa
    question), so the haystack can neither answer the question nor hold a second answer to it."""
    texts = [needle.answer, needle.value, *needle.required_values, *needle.needle_values]
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

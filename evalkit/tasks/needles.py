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

def draw_value(spec: IntegerValue | ChoiceValue | WordValue | UuidValue, rng: random.Random) -> str:
    """One value of a value spec, drawn from ``rng``."""
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
        # key-value retrieval: the pairs form one JSON object
        **({"context_open": "{", "context_close": "}"} if isinstance(task.generator, KvGenerator) else {}),
    )

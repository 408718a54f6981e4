"""Built-in needle kinds (a task's ``generator:`` block): needles, questions and answers from a seed.

Each kind is a function ``(spec, rng) -> NeedleInstance``; the same seed gives the same instance.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from evalkit.tasks.entities import (
    CHARACTERS,
    LANDMARKS,
    founded_document,
    lexical_overlap,
    person_name,
    place_name,
)
from evalkit.tasks.spec import (
    DocQaGenerator,
    KvGenerator,
    LowOverlapGenerator,
    MultiNeedleGenerator,
)
from evalkit.tasks.words import WORDS
from evalkit.types import NeedleInstance

# RULER's needle; also the template of a multi-needle task's look-alikes (``distractors:``)
MAGIC_TEMPLATE = "One of the special magic numbers for {key} is: {value}."


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def kv_retrieval(spec: KvGenerator, rng: random.Random) -> NeedleInstance:
    """One ``"key": "value",`` pair of UUIDs; the question gives the key."""
    key, value = _uuid(rng), _uuid(rng)
    return NeedleInstance(
        needle=f'"{key}": "{value}",', question=f'What is the value associated with the key "{key}"?',
        answer=value, value=value, facts={"key": key},
    )


def _number(rng: random.Random, digits: int) -> str:
    return str(rng.randint(1, 9)) + "".join(str(rng.randint(0, 9)) for _ in range(digits - 1))


def multi_needle(spec: MultiNeedleGenerator, rng: random.Random) -> NeedleInstance:
    """RULER's multikey, multivalue and multiquery needles (see ``MultiNeedleGenerator``)."""
    keys = rng.sample(WORDS, spec.needles)
    values: list[str] = []
    while len(values) < spec.needles:  # distinct values, so each needle's recall is its own
        value = _number(rng, spec.digits)
        if value not in values:
            values.append(value)
    if spec.kind == "multivalue":
        keys = [keys[0]] * spec.needles
    needles = [MAGIC_TEMPLATE.format(key=k, value=v) for k, v in zip(keys, values)]
    depths = tuple(round(rng.random(), 4) for _ in needles[1:])
    if spec.kind == "multikey":
        question, required = f"What is the special magic number for {keys[0]} mentioned in the text?", (values[0],)
    elif spec.kind == "multivalue":
        question, required = f"What are all the special magic numbers for {keys[0]} mentioned in the text?", tuple(values)
    else:
        question = f"What are the special magic numbers for {', '.join(keys[:-1])} and {keys[-1]} mentioned in the text?"
        required = tuple(values)
    return NeedleInstance(
        needle=needles[0], question=question, answer=", ".join(required), value=values[0],
        extra_needles=tuple(needles[1:]), extra_depths=depths,
        required_values=required if len(required) > 1 else (), needle_values=tuple(values),
        facts={"needle_kind": spec.kind, "keys": keys},
    )


def doc_qa(spec: DocQaGenerator, rng: random.Random) -> NeedleInstance:
    """The gold document: who founded a fictional institution."""
    name, kind = place_name(rng, gold=True), rng.choice(("library", "observatory", "museum", "academy"))
    town, founder = place_name(rng), person_name(rng)
    return NeedleInstance(
        needle=founded_document(name, kind, town, founder), question=f"Who founded the {name} {kind}?",
        answer=founder, value=founder, facts={"entity": name},
    )


def low_overlap(spec: LowOverlapGenerator, rng: random.Random) -> NeedleInstance:
    """A character next to a landmark; the question names the landmark's city only."""
    landmark, city = rng.choice(LANDMARKS)
    character = rng.choice(CHARACTERS)
    needle = f"Actually, {character} lives next to the {landmark}."
    question = f"Which character has been to {city}?"
    return NeedleInstance(
        needle=needle, question=question, answer=character, value=character,
        facts={"lexical_overlap": lexical_overlap(question, needle), "landmark": landmark, "city": city},
    )


GENERATORS: dict[type, Callable[..., NeedleInstance]] = {
    KvGenerator: kv_retrieval, MultiNeedleGenerator: multi_needle, DocQaGenerator: doc_qa,
    LowOverlapGenerator: low_overlap,
}


def generate(spec: object, seed: int) -> NeedleInstance:
    """The needle instance of a ``generator:`` block for one trial seed."""
    rng = random.Random(f"evalkit.kind:{seed}")
    return GENERATORS[type(spec)](spec, rng)

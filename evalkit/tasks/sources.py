"""More haystack sources: RULER's noise, key-value pairs, fictional documents, Hugging Face datasets.

Endless sources (noise, pairs, documents, generated prose) can fill any length; finite ones (files,
datasets) state their size with ``available_tokens`` and ``check_fills`` refuses a context they cannot
fill without repeating text.
"""

from __future__ import annotations

import itertools
import random
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from evalkit.errors import HaystackError
from evalkit.tasks.entities import documents
from evalkit.tasks.values import drop_matching

# RULER's noise haystack (Hsieh et al. 2024), repeated: text that carries no information at all
NOISE_SENTENCES: tuple[str, ...] = (
    "The grass is green.", "The sky is blue.", "The sun is yellow.", "Here we go.", "There and back again.",
)


class NoiseHaystack:
    """RULER's five noise sentences, cycled (the same stream for every seed)."""

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless noise sentences."""
        return itertools.cycle(NOISE_SENTENCES)


class KvPairsHaystack:
    """Random ``"uuid": "uuid",`` pairs: the filler of the key-value retrieval JSON object."""

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless pairs drawn from ``seed``."""
        rng = random.Random(f"evalkit.kv_pairs:{seed}")
        while True:
            key, value = (str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(2))
            yield f'"{key}": "{value}",'


class DocumentsHaystack:
    """Distractor documents about fictional entities (see ``entities.documents``)."""

    def __init__(self, similarity: float):
        self.similarity = similarity

    def sentences(self, seed: int) -> Iterator[str]:
        """Endless documents drawn from ``seed``; each is one placement unit (no newline)."""
        return documents(seed, self.similarity)


class DatasetHaystack:
    """Sentences of one text column of a dataset saved with ``datasets``' ``save_to_disk`` (read offline)."""

    def __init__(self, path: Path, column: str, split: str | None):
        try:
            import datasets
        except ImportError:
            raise HaystackError("the dataset haystack needs the `datasets` package; "
                                "pip install 'evalkit[datasets]'") from None
        from evalkit.tasks.haystacks import split_sentences

        if not path.is_dir():
            raise HaystackError(f"{path}: no such folder; give a folder written by Dataset.save_to_disk")
        try:
            data = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError) as exc:
            raise HaystackError(f"{path}: not a saved dataset ({exc}); write it with Dataset.save_to_disk") from None
        if isinstance(data, datasets.DatasetDict):
            if split not in data:
                raise HaystackError(f"{path}: split {split!r} not found; set haystack.split to one of "
                                    f"{', '.join(data)}")
            data = data[split]
        if column not in data.column_names:
            raise HaystackError(f"{path}: no column {column!r}; set haystack.column to one of "
                                f"{', '.join(data.column_names)}")
        self._sentences = tuple(s for text in data[column] if isinstance(text, str) for s in split_sentences(text))
        if len(self._sentences) < 2:
            raise HaystackError(f"{path}: column {column!r} holds fewer than two sentences; use a text column")
        self._path = path
        self.dropped_sentences = 0

    @property
    def units(self) -> tuple[str, ...]:
        """The sentences the stream cycles through (after ``drop_matching``)."""
        return self._sentences

    def drop_matching(self, pattern, what: str) -> int:
        """Leave out the sentences ``pattern`` finds something in; HaystackError if fewer than two remain."""
        self._sentences, self.dropped_sentences = drop_matching(self._sentences, pattern, what, self._path)
        return self.dropped_sentences

    def sentences(self, seed: int) -> Iterator[str]:
        """The dataset's sentences cycled from an offset drawn from ``seed``."""
        start = random.Random(f"evalkit.dataset:{seed}").randrange(len(self._sentences))
        return itertools.cycle(self._sentences[start:] + self._sentences[:start])

    def available_tokens(self, count_tokens: Callable[[str], int]) -> int:
        """Tokens of all sentences as placed (``count_tokens`` counts one piece)."""
        return sum(count_tokens(s) for s in self._sentences)


def available_tokens(source: object, count_tokens: Callable[[str], int]) -> int | None:
    """Tokens a source holds before it would repeat itself; None for endless sources."""
    if hasattr(source, "available_tokens"):
        return source.available_tokens(count_tokens)
    sentences = getattr(source, "_sentences", None)  # FileHaystack keeps its sentences
    if sentences is None:
        return None
    return sum(count_tokens(s) for s in sentences)


def check_fills(source: object, count_tokens: Callable[[str], int], needed_tokens: int, label: str) -> int | None:
    """Refuse (HaystackError) a source that holds fewer than ``needed_tokens``; return its token count."""
    tokens = available_tokens(source, count_tokens)
    if tokens is not None and tokens < needed_tokens:
        raise HaystackError(f"{label}: the haystack holds {tokens:,} tokens but the longest context needs "
                            f"{needed_tokens:,}; add text or use shorter context_lengths")
    return tokens

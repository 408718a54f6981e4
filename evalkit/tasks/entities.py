"""Fictional entities and documents for multi-document QA, and landmark facts for low-overlap needles.

Names are built from syllables, so no model can know them: a document is the only way to the answer.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

_ONSETS = ("Bel", "Cor", "Dra", "Fen", "Gal", "Hol", "Kes", "Lum", "Mar", "Nor", "Ost", "Pel", "Quen", "Ros",
           "Sal", "Tor", "Ulm", "Vel", "Wes", "Zan")
_CODAS = ("aria", "avon", "brook", "dane", "ella", "ford", "garth", "holm", "ington", "mere", "mont", "ora",
          "stead", "thorpe", "vale", "wick", "wyn", "ridge", "stow", "ley")
_FIRST = ("Alvar", "Brisa", "Cedric", "Dagny", "Elio", "Fenna", "Gideon", "Hesper", "Ilse", "Joren", "Kalla",
          "Leopold", "Mirela", "Niall", "Oriane", "Petra", "Quill", "Rosalind", "Soren", "Tamsin")
_KINDS = ("library", "brewery", "observatory", "shipyard", "orchestra", "museum", "bakery", "academy", "theatre",
          "glassworks")
_KNOWN_FOR = ("its copper roof", "a famous spring festival", "a collection of old maps", "its narrow stairways",
              "a garden of rare ferns", "its annual boat race", "a clock that runs backwards", "its blue tiles",
              "a long wooden pier", "its evening concerts")


def place_name(rng: random.Random, gold: bool = False) -> str:
    """A fictional place or institution name, e.g. ``"Corbrook"``.

    Gold entities (the one a question asks about) end in the first half of the endings, distractor
    entities in the second half, so no distractor document can share the gold entity's name.
    """
    half = len(_CODAS) // 2
    return rng.choice(_ONSETS) + rng.choice(_CODAS[:half] if gold else _CODAS[half:])


def person_name(rng: random.Random) -> str:
    """A fictional person, e.g. ``"Dagny Velmere"``."""
    return f"{rng.choice(_FIRST)} {place_name(rng)}"


def founded_document(name: str, kind: str, town: str, founder: str) -> str:
    """A document stating who founded ``name`` (the gold document, or a look-alike distractor)."""
    return f"Document (Title: {name}) The {name} {kind} stands in the town of {town}. It was founded by {founder}."


def other_document(name: str, kind: str, town: str, known_for: str) -> str:
    """A document about ``name`` that does not say who founded anything."""
    return f"Document (Title: {name}) The {name} {kind} in the town of {town} is known for {known_for}."


def documents(seed: int, similarity: float) -> Iterator[str]:
    """Endless distractor documents; a ``similarity`` share of them states a founder (of another entity)."""
    rng = random.Random(f"evalkit.documents:{seed}")
    while True:
        name, kind, town = place_name(rng), rng.choice(_KINDS), place_name(rng, gold=rng.random() < 0.5)
        if rng.random() < similarity:
            yield founded_document(name, kind, town, person_name(rng))
        else:
            yield other_document(name, kind, town, rng.choice(_KNOWN_FOR))


# (landmark, city): a needle names the landmark, the question names only the city
LANDMARKS: tuple[tuple[str, str], ...] = (
    ("Semper Opera House", "Dresden"), ("Eiffel Tower", "Paris"), ("Golden Gate Bridge", "San Francisco"),
    ("Colosseum", "Rome"), ("Sagrada Familia", "Barcelona"), ("Brandenburg Gate", "Berlin"),
    ("Charles Bridge", "Prague"), ("Little Mermaid statue", "Copenhagen"), ("Atomium", "Brussels"),
    ("Space Needle", "Seattle"), ("Christ the Redeemer statue", "Rio de Janeiro"), ("Bondi Beach", "Sydney"),
    ("Blue Mosque", "Istanbul"), ("Leaning Tower", "Pisa"), ("Acropolis", "Athens"), ("Kremlin", "Moscow"),
    ("CN Tower", "Toronto"), ("Burj Khalifa", "Dubai"), ("Petronas Towers", "Kuala Lumpur"),
    ("Senso-ji Temple", "Tokyo"), ("Big Ben", "London"), ("Rijksmuseum", "Amsterdam"), ("Alhambra", "Granada"),
    ("Hofburg Palace", "Vienna"), ("Matthias Church", "Budapest"),
)
CHARACTERS: tuple[str, ...] = ("Yuki", "Stuart", "Katie", "Veronica", "Gary", "Mandy", "Diana", "Caleb", "Megan",
                               "Rashid", "Ingrid", "Tomas", "Aisha", "Bruno", "Leila", "Oscar")

_STOPWORDS = frozenset("a an the of to in on at by for and or is are was were be been has have had which who what "
                       "where when it its that this actually next lives character".split())


def content_words(text: str) -> set[str]:
    """Lower-case words of ``text`` minus stop words (and the template words every needle shares)."""
    words = "".join(ch.lower() if ch.isalnum() else " " for ch in text).split()
    return {w for w in words if w not in _STOPWORDS}


def lexical_overlap(question: str, needle: str) -> float:
    """Share of the question's content words that also occur in the needle (0 = none shared)."""
    asked = content_words(question)
    return len(asked & content_words(needle)) / len(asked) if asked else 0.0

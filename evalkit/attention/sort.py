"""The ``attention_sort`` arm's ordering (Peysakhovich & Lerer 2023, Attention Sorting Combats Recency Bias in
Long Context Language Models): the documents sorted by the attention the answer step gave them in a first pass,
the most attended last (nearest the question), for a second pass that answers.

A document's score is its captured mass at row 0 (the last prompt token, which produces the first answer
token), averaged over layers and heads; the sort is ascending and stable (equal masses keep their order).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from evalkit.attention.regions import RegionLayout


def document_mass_by_head(mass: np.ndarray, layout: RegionLayout) -> np.ndarray:
    """Each document's attention mass at row 0, ``[layers, heads, documents]`` (``mass``: [layers, heads, rows,
    regions] as captured for ``layout``)."""
    start = layout.partition_size + layout.bins
    return mass[:, :, 0, start:start + layout.documents]


def document_masses(mass: np.ndarray, layout: RegionLayout) -> list[float]:
    """Each document's mean attention mass at row 0 over layers and heads."""
    return [float(x) for x in document_mass_by_head(mass, layout).mean(axis=(0, 1))]


def attention_order(masses: Sequence[float]) -> list[int]:
    """Document indices in ascending mass (most attended last; stable on ties)."""
    return sorted(range(len(masses)), key=lambda i: masses[i])

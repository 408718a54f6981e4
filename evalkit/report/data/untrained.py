"""Untrained controls among the records: the models a run built with random weights (``init: random``).

Random weights find a fact only by chance, so such a model's accuracy is no retrieval result: the report keeps its
trials out of every accuracy table, chart and finding, says so where the decisions are, and shows its attention by
position beside the trained models' (the architecture's own positional prior). Which models they are is read from
each run header's model facts (``store/run_facts.py``), written when the model was loaded; a header from before
``init`` existed names none.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from evalkit.store.run_facts import run_facts

UNTRAINED_NOTE = "random weights: accuracy not meaningful, attention shows the architecture's prior"


def untrained_models(headers: Iterable[dict]) -> frozenset[str]:
    """The model labels (records' ``model``) that the runs of ``headers`` ran with random weights."""
    return frozenset(name for header in headers for name, facts in run_facts(header).models.items()
                     if facts.random_init)


def is_untrained(df: pd.DataFrame, untrained: frozenset[str]) -> pd.Series:
    """Per row of ``df``: whether its model ran with random weights."""
    return df["model"].astype("str").isin(untrained)


def trained_records(df: pd.DataFrame, untrained: frozenset[str]) -> pd.DataFrame:
    """The rows of ``df`` whose model has trained weights (a categorical ``variant`` keeps only their variants, so a
    table grouped by variant has no empty rows for a control)."""
    if not untrained:
        return df
    frame = df[(~is_untrained(df, untrained)).to_numpy()].reset_index(drop=True)
    if "variant" in frame.columns and isinstance(frame["variant"].dtype, pd.CategoricalDtype):
        frame = frame.assign(variant=frame["variant"].cat.remove_unused_categories())
    return frame

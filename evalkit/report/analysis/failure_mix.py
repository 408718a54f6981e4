"""Why facts are missed: the failure types of completed trials per variant and position band.

Every finished trial of a run made after failure types existed carries ``failure`` (``types.FAILURE_TYPES``:
correct, distractor, other_in_prompt, absent, partial, format, truncated; ``evalkit/failures.py`` holds the
rules). Records from before carry "" and are left out here, so a run without failure types has no mix at all.

The position of a trial is its requested depth, or for a documents task its gold document position as a
fraction, index / (K - 1); positions fall into the depth bands of ``indices.py`` (start, early, middle, late,
end).

The decision block's *miss line* is said only when the misses support it: in the band with the lowest accuracy
among those holding at least ``MIN_MISSES`` misses, one failure type must make up more than half of the misses
(``MAJORITY``). The line states that share, its Wilson 95% interval and the number of misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.report.analysis.indices import BAND_NAMES, BANDS, band_of, completed_trials
from evalkit.report.analysis.stats import wilson_interval
from evalkit.types import FAILURE_TYPES

MIN_MISSES = 10  # fewer misses in a band: the mix is not worth a sentence
MAJORITY = 0.5  # the leading failure type must be more than this share of the band's misses
MISS_TYPES: tuple[str, ...] = tuple(f for f in FAILURE_TYPES if f != "correct")

# how each failure type reads in the report: (a short name, what it says about the model)
FAILURE_WORDS: dict[str, tuple[str, str]] = {
    "correct": ("correct", "the fact was found"),
    "distractor": ("look-alike answers", "the model finds the wrong fact, not nothing"),
    "other_in_prompt": ("other values from the prompt", "the model answers with a value it read elsewhere in the "
                        "prompt, not a planted look-alike"),
    "absent": ("invented values", "the model makes a value up: it did not find the fact"),
    "partial": ("part of the fact", "the model finds the fact but copies it wrong"),
    "format": ("answers without a value", "the model refuses, writes prose or continues the text instead of "
               "answering"),
    "truncated": ("cut-off answers", "the answer budget ran out before a value came: raise max_new_tokens"),
}


@dataclass(frozen=True)
class MissLine:
    """What the misses of one model's weakest band are mostly (``failure`` of ``misses``), with its interval."""

    model: str
    band: str
    failure: str  # a MISS_TYPES name
    count: int  # misses of that type
    misses: int  # all misses in the band
    trials: int  # all completed trials in the band
    share_low: float
    share_high: float
    pooled_layouts: bool  # the model ran several layouts and they are pooled here

    @property
    def share(self) -> float:
        """``count / misses``."""
        return self.count / self.misses


def position_fraction(frame: pd.DataFrame) -> pd.Series:
    """Each trial's position: the gold document position as a fraction for documents tasks, else the depth."""
    depth = frame["depth"].astype("float64")
    if "gold_document_index" not in frame.columns or "documents_total" not in frame.columns:
        return depth
    index = pd.to_numeric(frame["gold_document_index"], errors="coerce").astype("float64")
    total = pd.to_numeric(frame["documents_total"], errors="coerce").astype("float64")
    documents = index.notna() & (total > 1)
    return depth.where(~documents, index / (total - 1))


def failure_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials that carry a failure type, with ``variant``, ``band`` and ``failure`` columns."""
    if "failure" not in df.columns:
        return pd.DataFrame(columns=["variant", "model", "band", "failure"])
    done = completed_trials(df)
    failure = done["failure"].fillna("").astype("str")
    done = done[(failure != "").to_numpy()]
    return done.assign(failure=done["failure"].astype("str"), model=done["model"].astype("str"),
                       band=[band_of(p) for p in position_fraction(done)])


def has_failures(df: pd.DataFrame) -> bool:
    """Whether any completed placement trial of ``df`` carries a failure type."""
    return not failure_trials(df).empty


def failure_mix(df: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """Per ``by`` (variant or model) x band x failure type: ``count`` and ``share`` of the band's trials.

    Every failure type is listed for every band that has trials (zero counts included), bands in depth order,
    failure types in ``FAILURE_TYPES`` order; ``trials`` is the band's count and ``misses`` its wrong answers.
    """
    trials = failure_trials(df)
    columns = [by, "band", "failure", "count", "trials", "misses", "share"]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    trials = trials.assign(**{by: trials[by].astype("str")})
    counts = trials.groupby([by, "band", "failure"]).size()
    rows = []
    for (key, band), group in trials.groupby([by, "band"], sort=False):
        total, misses = len(group), int((group["failure"] != "correct").sum())
        for failure in FAILURE_TYPES:
            count = int(counts.get((key, band, failure), 0))
            rows.append((key, band, failure, count, total, misses, count / total))
    table = pd.DataFrame(rows, columns=columns)
    order = {name: i for i, name in enumerate(BAND_NAMES)}
    keys = list(dict.fromkeys(trials[by]))
    table = table.assign(_key=table[by].map(keys.index), _band=table["band"].map(order),
                         _failure=table["failure"].map(FAILURE_TYPES.index))
    return table.sort_values(["_key", "_band", "_failure"]).drop(columns=["_key", "_band", "_failure"]) \
        .reset_index(drop=True)


def failure_table(df: pd.DataFrame, by: str = "variant") -> pd.DataFrame:
    """The mix as one row per ``by`` x band: ``trials``, ``accuracy``, ``misses`` and one count column per failure
    type (the types no trial of ``df`` has are left out)."""
    mix = failure_mix(df, by)
    if mix.empty:
        return pd.DataFrame(columns=[by, "band", "trials", "accuracy", "misses"])
    wide = mix.pivot_table(index=[by, "band", "trials", "misses"], columns="failure", values="count",
                           aggfunc="sum", sort=False).reset_index()
    present = [f for f in FAILURE_TYPES if mix.loc[mix["failure"] == f, "count"].sum() > 0]
    wide["accuracy"] = wide.get("correct", 0) / wide["trials"]
    wide = wide[[by, "band", "trials", "accuracy", "misses", *[f for f in present if f != "correct"]]]
    wide.columns.name = None
    return wide.astype({c: "int64" for c in ["trials", "misses", *[f for f in present if f != "correct"]]})


def miss_lines(df: pd.DataFrame) -> dict[str, MissLine]:
    """Per model: its ``MissLine`` when the misses support one (see the module docstring), layouts pooled."""
    trials = failure_trials(df)
    if trials.empty:
        return {}
    table = failure_table(trials, by="model")
    out: dict[str, MissLine] = {}
    for model, rows in table.groupby("model", sort=False):
        line = _miss_line(str(model), rows, trials)
        if line is not None:
            out[str(model)] = line
    return out


def _miss_line(model: str, rows: pd.DataFrame, trials: pd.DataFrame) -> MissLine | None:
    """The line for one model's ``failure_table`` rows, or None when no band has enough, concentrated misses."""
    enough = rows[rows["misses"] >= MIN_MISSES]
    if enough.empty:
        return None
    order = {name: i for i, name in enumerate(BAND_NAMES)}
    weakest = enough.assign(_band=enough["band"].map(order)).sort_values(["accuracy", "_band"]).iloc[0]
    types = [f for f in MISS_TYPES if f in rows.columns]
    counts = np.array([int(weakest[f]) for f in types])
    lead = int(np.argmax(counts))  # ties go to the earlier type in FAILURE_TYPES order
    misses = int(weakest["misses"])
    if counts[lead] / misses <= MAJORITY:
        return None
    low, high = wilson_interval(int(counts[lead]), misses)
    mine = trials[trials["model"] == model]
    pooled = "layout" in mine.columns and mine["layout"].astype("str").nunique() > 1
    return MissLine(model, str(weakest["band"]), types[lead], int(counts[lead]), misses, int(weakest["trials"]),
                    float(low), float(high), bool(pooled))


def band_label(name: str, word: str = "") -> str:
    """``"middle (30–70%)"`` for a band name; with ``word="band"``: ``"middle band (30–70%)"``."""
    band = next(b for b in BANDS if b.name == name)
    return band.label if not word else f"{band.name} {word} ({band.low * 100:.0f}–{band.high * 100:.0f}%)"

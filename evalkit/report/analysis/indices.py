"""Position indices: how accuracy depends on where the needle sits, and how long a context stays usable.

Depth bands (requested depth, fraction of the haystack before the needle; bounds inclusive where
written with brackets):

- ``start``  [0%, 10%]     - the first 10% of depth
- ``early``  (10%, 30%)
- ``middle`` [30%, 70%]    - the middle band the primacy and recency indices compare against
- ``late``   (70%, 90%)
- ``end``    [90%, 100%]   - the last 10% of depth

Per variant, task and context length: *primacy index* = accuracy(start) - accuracy(middle),
*recency index* = accuracy(end) - accuracy(middle) (in points of accuracy, NaN when a band holds
no trial), and the *worst band* = the band with the lowest accuracy. Accuracies pool the trials of
a band (each trial counts once); their intervals count samples, not trials (a sample's depths share its needle:
design-effect Wilson, ``clusters.py``). The *effective context length* of a variant and task is the longest
tested length L such that at L and at every shorter tested length the accuracy over all depths
stays at or above the threshold (85.6% by default, as in RULER).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from evalkit.report.data.labels import add_variants, placement_trials
from evalkit.report.data.lengths import FRACTION, length_axis
from evalkit.report.analysis.clusters import cluster_wilson
from evalkit.report.analysis.stats import difference_interval

DEFAULT_THRESHOLD = 0.856  # RULER's effective-length threshold (Llama-2-7B's 4k score)
_EPS = 1e-9  # depths come from YAML floats: 0.3 must fall inside [0.3, 0.7]
SERIES_KEYS: tuple[str, ...] = ("variant", "task", "context_length")


@dataclass(frozen=True)
class DepthBand:
    """A named range of requested needle depth; ``closed`` says whether the bounds belong to it."""

    name: str
    low: float
    high: float
    closed: bool

    def contains(self, depth: float) -> bool:
        """Whether ``depth`` (fraction 0-1) lies in the band."""
        if self.closed:
            return self.low - _EPS <= depth <= self.high + _EPS
        return self.low + _EPS < depth < self.high - _EPS

    @property
    def label(self) -> str:
        """``"middle (30-70%)"``."""
        return f"{self.name} ({self.low * 100:.0f}–{self.high * 100:.0f}%)"


BANDS: tuple[DepthBand, ...] = (
    DepthBand("start", 0.0, 0.1, True),
    DepthBand("early", 0.1, 0.3, False),
    DepthBand("middle", 0.3, 0.7, True),
    DepthBand("late", 0.7, 0.9, False),
    DepthBand("end", 0.9, 1.0, True),
)
BAND_NAMES: tuple[str, ...] = tuple(b.name for b in BANDS)


def band_of(depth: float) -> str:
    """Name of the band holding ``depth``: ``band_of(0.5) == "middle"``."""
    for band in BANDS:
        if band.contains(float(depth)):
            return band.name
    raise ValueError(f"depth {depth!r} is outside [0, 1]")


def completed_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials with a ``variant`` column and a ``_correct`` 0/1 column."""
    frame = df if "variant" in df.columns else add_variants(df)
    frame = placement_trials(frame)
    frame = frame[(frame["status"] == "ok").to_numpy()]
    return frame.assign(variant=frame["variant"].astype("str"),
                        _correct=frame["correct"].fillna(False).astype("int64"))


def pooled_accuracy(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """``keys`` + ``n``, ``correct``, ``accuracy``, ``ci_low``, ``ci_high`` (design-effect Wilson 95% over samples,
    ``clusters.py``: the depths of one sample share its needle) and the ``n_effective`` / ``correct_effective``
    counts that interval used."""
    table = cluster_wilson(frame, keys)
    return table[[*keys, "n", "correct", "accuracy", "ci_low", "ci_high", "n_effective", "correct_effective"]]


def band_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x context_length x band: pooled accuracy with its design-effect Wilson 95% CI.

    Extra columns ``depth_min`` / ``depth_max``: the tested depths that fell in the band. Bands
    with no completed trial have no row. Bands are listed in depth order.
    """
    frame = completed_trials(df)
    # object dtype even with no rows (a report of untrained controls only): the merge below keys on it
    frame = frame.assign(band=pd.Series([band_of(d) for d in frame["depth"]], index=frame.index, dtype="object"))
    table = pooled_accuracy(frame, [*SERIES_KEYS, "band"])
    depths = frame.groupby([*SERIES_KEYS, "band"])["depth"].agg(depth_min="min", depth_max="max").reset_index()
    table = table.merge(depths, on=[*SERIES_KEYS, "band"])
    table["band"] = pd.Categorical(table["band"], categories=BAND_NAMES, ordered=True)
    return table.sort_values([*SERIES_KEYS, "band"]).reset_index(drop=True)


def length_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x context_length: accuracy over all depths (pooled) with design-effect Wilson 95% CI;
    with ``context_fraction`` beside the length where the records are window fractions (``lengths.length_axis``)."""
    fraction = [FRACTION] if length_axis(df) == FRACTION else []  # one per model's length: it splits no row
    return pooled_accuracy(completed_trials(df), [*SERIES_KEYS, *fraction])


def position_indices(df: pd.DataFrame) -> pd.DataFrame:
    """Per variant x task x context_length: primacy and recency indices, worst band, overall accuracy.

    Columns: ``variant, task, context_length, n, accuracy`` (over all depths), ``start_accuracy``,
    ``middle_accuracy``, ``end_accuracy``, ``primacy`` / ``recency`` (differences of fractions, e.g.
    0.5 = 50 points) each with ``_low`` / ``_high`` (Newcombe 95% interval), ``worst_band``,
    ``worst_depth_min``, ``worst_depth_max``, ``worst_accuracy``, ``worst_ci_low``, ``worst_ci_high``.
    The worst band is the band of lowest accuracy; a tie goes to the shallower band.
    """
    overall = length_table(df)[[*SERIES_KEYS, "n", "accuracy"]]
    bands = band_table(df)
    rows = []
    for key, group in bands.groupby(list(SERIES_KEYS), sort=True):
        by_band = group.set_index("band", drop=False)
        row = dict(zip(SERIES_KEYS, key))
        for name in ("start", "middle", "end"):
            row[f"{name}_accuracy"] = by_band["accuracy"].get(name, np.nan)
        for index, edge in (("primacy", "start"), ("recency", "end")):
            row[index], row[f"{index}_low"], row[f"{index}_high"] = _band_difference(by_band, edge, "middle")
        worst = group.loc[group["accuracy"].idxmin()]  # groups are in band order: ties keep the shallower
        row.update(worst_band=str(worst["band"]), worst_depth_min=worst["depth_min"],
                   worst_depth_max=worst["depth_max"], worst_accuracy=worst["accuracy"],
                   worst_ci_low=worst["ci_low"], worst_ci_high=worst["ci_high"])
        rows.append(row)
    columns = [*SERIES_KEYS, "start_accuracy", "middle_accuracy", "end_accuracy", "primacy", "primacy_low",
               "primacy_high", "recency", "recency_low", "recency_high", "worst_band", "worst_depth_min",
               "worst_depth_max", "worst_accuracy", "worst_ci_low", "worst_ci_high"]
    return overall.merge(pd.DataFrame(rows, columns=columns), on=list(SERIES_KEYS), how="left")


def _band_difference(by_band: pd.DataFrame, first: str, second: str) -> tuple[float, float, float]:
    """accuracy(first) - accuracy(second) with its Newcombe interval; NaNs when a band is empty."""
    if first not in by_band.index or second not in by_band.index:
        return np.nan, np.nan, np.nan
    a, b = by_band.loc[first], by_band.loc[second]
    # Newcombe on the design-effect counts: a band pools the depths of each sample
    diff, low, high = difference_interval(a["correct_effective"], a["n_effective"], b["correct_effective"],
                                          b["n_effective"])
    return float(diff), float(low), float(high)


def effective_context_length(df: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD) -> pd.DataFrame:
    """Per variant x task: the longest length whose accuracy (over all depths) stays >= ``threshold``.

    "Stays" means every shorter tested length passes too, so one lucky long length does not count.
    Columns: ``variant, task, threshold, effective_length`` (nullable Int64: NA when even the
    shortest tested length is below the threshold), ``shortest_tested``, ``longest_tested``,
    ``beyond_tested`` (True when every tested length passed: the true value may be longer),
    ``first_failing_length`` (NA when none) and ``first_failing_accuracy``.
    """
    check_threshold(threshold)
    lengths = length_table(df)
    rows = []
    for (variant, task), group in lengths.groupby(["variant", "task"], sort=True):
        group = group.sort_values("context_length")
        passing = (group["accuracy"] >= threshold - _EPS).to_numpy()
        # number of leading lengths that pass (argmin finds the first False; all True -> len)
        lead = len(passing) if passing.all() else int(np.argmin(passing))
        failing = group.iloc[lead] if lead < len(group) else None
        rows.append({
            "variant": variant, "task": task, "threshold": threshold,
            "effective_length": int(group["context_length"].iloc[lead - 1]) if lead else pd.NA,
            "shortest_tested": int(group["context_length"].iloc[0]),
            "longest_tested": int(group["context_length"].iloc[-1]),
            "beyond_tested": bool(passing.all()),
            "first_failing_length": pd.NA if failing is None else int(failing["context_length"]),
            "first_failing_accuracy": np.nan if failing is None else float(failing["accuracy"]),
        })
    table = pd.DataFrame(rows, columns=["variant", "task", "threshold", "effective_length", "shortest_tested",
                                        "longest_tested", "beyond_tested", "first_failing_length",
                                        "first_failing_accuracy"])
    for column in ("effective_length", "first_failing_length"):
        table[column] = table[column].astype("Int64")
    return table


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a fraction in (0, 1]; a ``ValueError`` saying how to fix it otherwise."""
    if not isinstance(threshold, (int, float)) or not 0.0 < float(threshold) <= 1.0:
        number = isinstance(threshold, (int, float))
        hint = f" (did you mean {threshold / 100:g}?)" if number and 1 < threshold <= 100 else ""
        raise ValueError(f"threshold must be a fraction in (0, 1], e.g. 0.856 for 85.6%; got {threshold!r}{hint}")
    return float(threshold)


def parse_threshold(text: str) -> float:
    """A threshold as typed on the command line: ``"0.856"`` or ``"85.6%"`` -> 0.856.

    Raises ``ValueError`` saying how to write it; a bare number above 1 is refused (is ``90`` a
    fraction or a percentage?) with the ``%`` form suggested.
    """
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError:
        raise ValueError(f"{text!r} is not a number; write a fraction like 0.856 or a percentage like 85.6%") from None
    if percent:
        value /= 100.0
    if not 0.0 < value <= 1.0:
        hint = f"; did you mean {raw}%?" if not percent and 1.0 < value <= 100.0 else ""
        raise ValueError(f"{text!r} is not in (0, 1] or (0%, 100%]{hint}")
    return value

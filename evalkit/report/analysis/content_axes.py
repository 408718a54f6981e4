"""Paired comparisons along the content axes of the layout grid, and accuracy against measured similarity.

The content axes (``config/layouts.py``): ``distractor_count`` (look-alikes planted), ``haystack_order``
(coherent or shuffled) and ``needle_variant`` (which needle template). A layout axis does not change a trial's
seed, so two trials that differ in one content axis only hold the same needle value in the same haystack stream
at the same depth: they are *paired*. Per model and axis, every value is compared with the axis's baseline on
the pairs that match in task, context length, depth, sample and every other layout axis: McNemar's exact test on
the discordant pairs and a paired bootstrap interval of the accuracy difference over samples (``recommend.py``,
as for layouts). Baselines: no distractors (else the fewest), the coherent haystack, the needle variant of
highest measured question overlap (else the first by name).

Similarity: every trial records ``question_overlap`` (the share of the question's content words in the needle)
and ``question_bm25``. Trials fall into ``SIMILARITY_BINS`` of overlap; per model, position band and bin the
pooled accuracy has a design-effect Wilson interval over samples (``clusters.py``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from evalkit.config.layouts import Layout
from evalkit.report.analysis.clusters import cluster_labels, cluster_wilson
from evalkit.report.analysis.failure_mix import position_fraction
from evalkit.report.analysis.indices import BAND_NAMES, band_of, completed_trials
from evalkit.report.analysis.recommend import PAIR_KEYS, mcnemar_exact, paired_bootstrap
from evalkit.report.data.labels import CONTENT_AXES
from evalkit.report.data.load import LAYOUT_AXES

AXIS_TITLES = {"distractor_count": "look-alike distractors", "haystack_order": "haystack order",
               "needle_variant": "needle variant (similarity to the question)"}
# (name, low, high): overlap in [low, high), the last bin closed
SIMILARITY_BINS: tuple[tuple[str, float, float], ...] = (("low", 0.0, 1 / 3), ("medium", 1 / 3, 2 / 3),
                                                         ("high", 2 / 3, 1.0))
PAIR_COLUMNS = ["model", "axis", "baseline", "value", "pairs", "baseline_accuracy", "accuracy", "difference",
                "diff_low", "diff_high", "baseline_only", "value_only", "p_value"]


def axis_value_label(axis: str, value: object) -> str:
    """How the report names one value of a content axis: ``("distractor_count", 4) -> "4 distractors"``."""
    return Layout(**{axis: value}).label((axis,))


def _plain(value: object) -> object:
    """A record value as the Layout axis holds it: null -> None, integral numbers -> int."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and value.is_integer()):
        return int(value)
    return value


def _text(column: pd.Series) -> pd.Series:
    """``_plain`` values as text ("-" for None): keys pandas keeps (a null key would drop its rows)."""
    return pd.Series(["-" if v is None else str(v) for v in column.astype("object").map(_plain)], index=column.index,
                     dtype="object")


def content_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials with ``_correct``, ``model`` as text and ``_cluster`` (``clusters.py``)."""
    done = completed_trials(df)
    return done.assign(model=done["model"].astype("str"), _cluster=cluster_labels(done).to_numpy())


def varied_axes(trials: pd.DataFrame) -> tuple[str, ...]:
    """The content axes that take more than one value in ``trials``."""
    return tuple(a for a in CONTENT_AXES if a in trials.columns and _text(trials[a]).nunique() > 1)


def _baseline(trials: pd.DataFrame, axis: str, values: list[object]) -> object:
    """The value every other is compared with (see the module docstring)."""
    if axis == "distractor_count":
        counts = [v for v in values if v is not None]
        return 0 if 0 in counts else (min(counts) if counts else None)
    if axis == "haystack_order":
        return "coherent" if "coherent" in values else values[0]
    overlap = trials.groupby(_text(trials[axis]))["question_overlap"].mean() \
        if "question_overlap" in trials.columns else pd.Series(dtype="float64")
    if overlap.notna().any():
        best = str(overlap.idxmax())
        return next(v for v in values if ("-" if v is None else str(v)) == best)
    return sorted(values, key=str)[0]


def axis_pairs(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x varied content axis x value other than the baseline: the paired comparison (``PAIR_COLUMNS``).

    ``difference`` is accuracy(value) minus accuracy(baseline) on the paired trials, ``diff_low``/``diff_high``
    its paired bootstrap 95% interval over samples; ``baseline_only``/``value_only`` count the discordant pairs
    (right only under the baseline / only under the value); ``p_value`` is McNemar's exact test.
    """
    trials = content_trials(df)
    rows = []
    for model, mine in trials.groupby("model", sort=False):
        for axis in varied_axes(mine):
            rows += _compare_axis(str(model), mine, axis)
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def _compare_axis(model: str, trials: pd.DataFrame, axis: str) -> list[dict]:
    """One model's comparisons along ``axis``: every value against the baseline, on matched trials."""
    values = list(dict.fromkeys(trials[axis].astype("object").map(_plain)))
    baseline = _baseline(trials, axis, values)
    others = [a for a in LAYOUT_AXES if a != axis and a in trials.columns]
    keys = {k: _text(trials[k]) for k in [*PAIR_KEYS, *others]}
    frame = pd.DataFrame({**keys, "_cluster": trials["_cluster"].to_numpy(), "_correct": trials["_correct"],
                          "_value": _text(trials[axis])})
    wide = frame.pivot_table(index=[*keys, "_cluster"], columns="_value", values="_correct", aggfunc="first")
    rows = []
    ordered = sorted((v for v in values if v != baseline), key=lambda v: (v is None, str(v).zfill(8)))
    name = {v: "-" if v is None else str(v) for v in values}
    for value in ordered:
        both = wide[[name[baseline], name[value]]].dropna()
        if both.empty:
            continue
        x, y = both[name[baseline]].to_numpy(dtype=int), both[name[value]].to_numpy(dtype=int)
        diff, low, high = paired_bootstrap(y, x, clusters=both.index.get_level_values("_cluster"))
        b, c = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
        rows.append(dict(model=model, axis=axis, baseline=axis_value_label(axis, baseline),
                         value=axis_value_label(axis, value), pairs=len(both), baseline_accuracy=float(x.mean()),
                         accuracy=float(y.mean()), difference=diff, diff_low=low, diff_high=high, baseline_only=b,
                         value_only=c, p_value=mcnemar_exact(b, c)))
    return rows


def similarity_bin(overlap: float) -> str:
    """The ``SIMILARITY_BINS`` name holding ``overlap`` (a share in [0, 1])."""
    for name, low, high in SIMILARITY_BINS:
        if low <= overlap < high:
            return name
    return SIMILARITY_BINS[-1][0]


def similarity_table(df: pd.DataFrame) -> pd.DataFrame:
    """Per model x position band x similarity bin: ``n, correct, accuracy, ci_low, ci_high`` and the bin's mean
    ``overlap`` and ``bm25``; empty when no trial measured its overlap."""
    columns = ["model", "band", "similarity", "n", "correct", "accuracy", "ci_low", "ci_high", "overlap", "bm25"]
    if "question_overlap" not in df.columns:
        return pd.DataFrame(columns=columns)
    trials = content_trials(df)
    trials = trials[trials["question_overlap"].notna().to_numpy()]
    if trials.empty:
        return pd.DataFrame(columns=columns)
    trials = trials.assign(band=[band_of(p) for p in position_fraction(trials)],
                           similarity=[similarity_bin(float(v)) for v in trials["question_overlap"]],
                           bm25=trials["question_bm25"].astype("float64"),
                           overlap=trials["question_overlap"].astype("float64"))
    keys = ["model", "band", "similarity"]
    table = cluster_wilson(trials, keys).merge(
        trials.groupby(keys, sort=False).agg(overlap=("overlap", "mean"), bm25=("bm25", "mean")).reset_index(), on=keys)
    bins = [b[0] for b in SIMILARITY_BINS]
    order = table.assign(_band=table["band"].map(BAND_NAMES.index), _bin=table["similarity"].map(bins.index))
    return order.sort_values(["model", "_band", "_bin"])[columns].reset_index(drop=True)

"""Does a fix help? Each mitigation arm against the baseline ``none`` on the same trials (paired).

An arm ran on exactly the baseline's trials (config ``mitigations``: same model, task, length, depth, sample),
so each comparison pairs one arm trial with one baseline trial: McNemar's exact test on the discordant pairs
and a paired bootstrap interval of the accuracy difference (``recommend.py``'s, reused, resampling samples: the
pairs of one sample share its needle), overall and in the middle band (depths 0.3-0.7, where "lost in the middle" loses facts) and at the ends (start and end bands). An effect is
stated only when both agree (``effect_detected``).
"""

from __future__ import annotations

import pandas as pd

from evalkit.report.analysis.clusters import CLUSTER_COLUMN, cluster_labels
from evalkit.report.analysis.decision import ALPHA
from evalkit.report.analysis.indices import band_of
from evalkit.report.analysis.recommend import mcnemar_exact, paired_bootstrap
from evalkit.report.analysis.stats import wilson_intervals

BASELINE = "none"
ARM_PAIR_KEYS: tuple[str, ...] = ("task", "layout", "context_length", "depth", "sample")
COMPARISON_COLUMNS = [
    "model", "task", "arm", "pairs", "baseline_accuracy", "arm_accuracy", "difference", "diff_low", "diff_high",
    "arm_only", "baseline_only", "p_value", "middle_pairs", "middle_difference", "middle_low", "middle_high",
    "middle_p_value", "ends_difference", "ends_low", "ends_high", "ends_p_value", "extra_forwards",
    "extra_prompt_tokens", "masked_heads",
]


def baseline_records(df: pd.DataFrame) -> pd.DataFrame:
    """The baseline's records (every other section of the report shows those), all of them when no ``none`` ran."""
    if "mitigation" not in df.columns or not (df["mitigation"] == BASELINE).any():
        return df
    return df[(df["mitigation"] == BASELINE).to_numpy()].reset_index(drop=True)


def arm_trials(df: pd.DataFrame) -> pd.DataFrame:
    """Completed placement trials with ``mitigation``, ``band`` and ``_correct`` (0/1) columns."""
    if "mitigation" not in df.columns:
        return df.iloc[0:0]
    keep = (df["status"] == "ok") & (df["control"].astype("str") == "")
    frame = df[keep.to_numpy()]
    return frame.assign(model=frame["model"].astype("str"), task=frame["task"].astype("str"),
                        mitigation=frame["mitigation"].astype("str"), band=frame["depth"].map(band_of),
                        _correct=frame["correct"].fillna(False).astype("int64"))


def has_arms(trials: pd.DataFrame) -> bool:
    """Whether any arm besides the baseline has trials to compare."""
    return not trials.empty and bool((trials["mitigation"] != BASELINE).any()) and bool(
        (trials["mitigation"] == BASELINE).any())


def arm_curves(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model x task x arm x depth: ``n, correct, accuracy, ci_low, ci_high`` (Wilson 95%)."""
    table = trials.groupby(["model", "task", "mitigation", "depth"], sort=False).agg(
        n=("_correct", "size"), correct=("_correct", "sum")).reset_index()
    table["accuracy"] = table["correct"] / table["n"]
    table["ci_low"], table["ci_high"] = wilson_intervals(table["correct"], table["n"])
    return table


def _paired(both: pd.DataFrame, arm: str) -> tuple[float, float, float, int, int, float]:
    """(difference arm - baseline, low, high, arm-only, baseline-only, McNemar p) over paired rows."""
    if both.empty:
        nan = float("nan")
        return nan, nan, nan, 0, 0, nan
    x, y = both[arm].to_numpy(dtype=int), both[BASELINE].to_numpy(dtype=int)
    # pairs pool a sample's depths and lengths (one needle): resample samples, not pairs
    diff, low, high = paired_bootstrap(x, y, clusters=both.index.get_level_values(CLUSTER_COLUMN))
    b, c = int(((x == 1) & (y == 0)).sum()), int(((x == 0) & (y == 1)).sum())
    return diff, low, high, b, c, mcnemar_exact(b, c)


def arm_comparisons(trials: pd.DataFrame) -> pd.DataFrame:
    """Per model x task x arm (not the baseline): the paired comparison with ``none`` (``COMPARISON_COLUMNS``)."""
    rows = []
    for (model, task), sub in trials.groupby(["model", "task"], sort=False):
        sub = sub.assign(**{CLUSTER_COLUMN: cluster_labels(sub).to_numpy()})
        wide = sub.pivot_table(index=[*ARM_PAIR_KEYS, CLUSTER_COLUMN], columns="mitigation", values="_correct",
                               aggfunc="first")
        if BASELINE not in wide.columns:
            continue
        bands = pd.Series([band_of(d) for d in wide.index.get_level_values("depth")], index=wide.index)
        for arm in [a for a in dict.fromkeys(sub["mitigation"]) if a != BASELINE]:
            both = wide[[arm, BASELINE]].dropna()
            diff, low, high, b, c, p = _paired(both, arm)
            middle = both[bands.loc[both.index] == "middle"]
            m_diff, m_low, m_high, _, _, m_p = _paired(middle, arm)
            ends = both[bands.loc[both.index].isin(["start", "end"])]
            e_diff, e_low, e_high, _, _, e_p = _paired(ends, arm)
            arm_rows = sub[sub["mitigation"] == arm]
            heads = next((e.get("masked_heads") for e in arm_rows["extra"] if isinstance(e, dict)
                          and e.get("masked_heads")), None)
            rows.append(dict(
                model=model, task=task, arm=arm, pairs=len(both), baseline_accuracy=both[BASELINE].mean(),
                arm_accuracy=both[arm].mean(), difference=diff, diff_low=low, diff_high=high, arm_only=b,
                baseline_only=c, p_value=p, middle_pairs=len(middle), middle_difference=m_diff, middle_low=m_low,
                middle_high=m_high, middle_p_value=m_p, ends_difference=e_diff, ends_low=e_low, ends_high=e_high,
                ends_p_value=e_p,
                extra_forwards=float(arm_rows["extra_forwards"].mean()),
                extra_prompt_tokens=float(arm_rows["extra_prompt_tokens"].mean()),
                masked_heads="" if heads is None else " ".join(f"{a}.{h}" for a, h in heads)))
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def effect_detected(low: float, high: float, p_value: float) -> bool:
    """Whether a paired difference is decided at 95%: its bootstrap interval excludes zero and McNemar's exact
    p is below ``ALPHA``. Both, because with few samples the bootstrap over clusters is too narrow (three of ten
    pairs discordant, all one way, give an interval off zero but p = 0.25), and McNemar alone ignores that the
    pairs of one sample share a needle (NaN: nothing to tell)."""
    return interval_excludes_zero(low, high) and bool(pd.notna(p_value) and p_value < ALPHA)


def interval_excludes_zero(low: float, high: float) -> bool:
    """Whether a 95% interval lies wholly above or below zero (NaN: no)."""
    return bool(pd.notna(low) and pd.notna(high) and (low > 0 or high < 0))

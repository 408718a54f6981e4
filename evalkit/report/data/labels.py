"""Derived labels of trial records: the control kind and the *variant* each record belongs to.

A *variant* is one series the report compares: a model, or a model under one prompt layout, or a
model in one run directory. Labels come only from the records (and their ``run_dir``), so
``load_results`` output and hand-built frames behave alike.
"""

from __future__ import annotations

import dataclasses
from pathlib import PurePath

import pandas as pd

from evalkit.config.layouts import Layout

CONTROLS: tuple[str, ...] = ("closed_book", "oracle")  # ``control`` values reports know
# layout axes that change what the prompt holds, not how it is laid out: compared as content, never recommended
CONTENT_AXES: tuple[str, ...] = ("distractor_count", "haystack_order", "needle_variant")
VARIANT_SEPARATOR = " · "


def _text_column(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` of every row as a string ("" where null, or when ``df`` has no such column)."""
    if name not in df.columns:
        return pd.Series("", index=df.index, dtype="str")
    return pd.Series(["" if pd.isna(v) else str(v) for v in df[name].astype("object")], index=df.index, dtype="str")


def control_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: the ``control`` column ("closed_book", "oracle", ...) or "" for a placement trial.

    Control trials do not place a needle at a depth (closed book: no needle; oracle: the needle
    alone), so they are kept out of every depth x length table and reported as rates instead.
    """
    return _text_column(df, "control")


def placement_trials(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` that are not control trials."""
    return df[(control_labels(df) == "").to_numpy()]


def layout_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: the prompt layout's label from the ``layout`` column ("" when the run had one layout)."""
    return _text_column(df, "layout")


def axis_text(df: pd.DataFrame, name: str) -> pd.Series:
    """Column ``name`` as text per row ("" where null or missing): a key pandas groups and pivots on."""
    return _text_column(df, name)


def prompt_layout_labels(df: pd.DataFrame) -> pd.Series:
    """Per row: the label of its prompt layout alone, the content axes (``CONTENT_AXES``) left out.

    Without a varied content axis this is ``layout_labels``. With one, the label names the varied prompt axes
    ("" when none varies): layouts that differ only in content are one prompt layout, so a recommendation never
    says "use 0 distractors".
    """
    if not any(axis_text(df, a).nunique() > 1 for a in CONTENT_AXES if a in df.columns):
        return layout_labels(df)
    prompt = [f.name for f in dataclasses.fields(Layout) if f.name not in CONTENT_AXES and f.name in df.columns]
    varied = tuple(a for a in prompt if axis_text(df, a).nunique() > 1)
    if not varied:
        return pd.Series("", index=df.index, dtype="str")
    values = df[prompt].astype("object").where(df[prompt].notna(), None)
    labels = [Layout(**dict(zip(prompt, row))).label(varied) for row in values.itertuples(index=False, name=None)]
    return pd.Series(labels, index=df.index, dtype="str")


def run_labels(run_dirs: list[str]) -> dict[str, str]:
    """Short unique names for run directories: the folder name, with parents added on a clash.

    ``["a/runs/x", "b/runs/x", "c/y"] -> {"a/runs/x": "a/runs/x", "b/runs/x": "b/runs/x", "c/y": "y"}``
    """
    parts = {d: PurePath(d).parts or (d,) for d in run_dirs}
    labels: dict[str, str] = {}
    for run_dir in run_dirs:
        depth = 1
        while True:
            label = "/".join(parts[run_dir][-depth:])
            clash = [o for o in run_dirs if o != run_dir and "/".join(parts[o][-depth:]) == label]
            if not clash or depth >= len(parts[run_dir]):
                labels[run_dir] = label
                break
            depth += 1
    return labels


def add_variants(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` with a ``variant`` column naming the series each row belongs to.

    - records carrying a layout label (``layout`` column): ``"model · layout"``;
    - otherwise a model found in several run directories: ``"model · <run dir name>"`` per run;
    - otherwise the model name.

    The column is ordered (pandas categorical) by first run directory, then model, then label, so
    the first variant is the comparison baseline.
    """
    models = df["model"].astype("str")
    runs = df["run_dir"].astype("str") if "run_dir" in df.columns else pd.Series("", index=df.index)
    layouts = layout_labels(df)
    names = run_labels(sorted(set(runs)))
    runs_per_model = runs.groupby(models).nunique()
    labels = []
    for model, run, layout in zip(models, runs, layouts):
        if (layouts != "").any():
            labels.append(model + VARIANT_SEPARATOR + layout if layout else model)
        elif runs_per_model[model] > 1:
            labels.append(model + VARIANT_SEPARATOR + names[run])
        else:
            labels.append(model)
    run_order = {run: i for i, run in enumerate(dict.fromkeys(runs))}
    keys: dict[str, tuple[int, str, str]] = {}
    for label, run, model in zip(labels, runs, models):
        keys.setdefault(label, (run_order[run], model, label))
    order = sorted(dict.fromkeys(labels), key=lambda label: keys[label])
    return df.assign(variant=pd.Categorical(labels, categories=order, ordered=True))


def variant_order(df: pd.DataFrame) -> list[str]:
    """Variants of ``df`` (``add_variants`` applied when missing), baseline first; only those present."""
    frame = df if "variant" in df.columns else add_variants(df)
    column = frame["variant"]
    present = set(map(str, column.unique()))
    categories = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else sorted(present)
    return [str(c) for c in categories if str(c) in present]

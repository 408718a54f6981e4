"""Write a report folder: summary tables, charts per model x task, and ``report.md``."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evalkit.report.charts import new_figure, plot_accuracy_vs_depth, plot_heatmap, save_figure
from evalkit.report.load import load_header, load_results
from evalkit.report.stats import wilson_interval
from evalkit.report.tables import summary_table, to_markdown


@dataclass(frozen=True)
class ReportPaths:
    """Files written by ``write_report`` (all inside ``out_dir``)."""

    out_dir: Path
    report_md: Path
    summary_md: Path
    summary_csv: Path
    charts: tuple[Path, ...]  # heatmap_*.png/.svg and accuracy_vs_depth_*.png/.svg

    @property
    def files(self) -> tuple[Path, ...]:
        """Every written file."""
        return (self.report_md, self.summary_md, self.summary_csv, *self.charts)


def write_report(run_dirs: Sequence[str | Path] | str | Path, out_dir: str | Path) -> ReportPaths:
    """Read ``run_dirs`` and write the report into ``out_dir`` (created if needed).

    Writes ``summary.csv`` and ``summary.md`` (``summary_table``), per model x task
    ``heatmap_<model>_<task>.png/.svg`` and ``accuracy_vs_depth_<model>_<task>.png/.svg`` (names
    slugged so nothing lands outside ``out_dir``), and ``report.md`` tying them together.
    """
    dirs = [Path(run_dirs)] if isinstance(run_dirs, (str, os.PathLike)) else [Path(d) for d in run_dirs]
    df = load_results(dirs)
    headers = [load_header(d) for d in dirs]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summary_table(df)

    summary_csv = _inside(out, "summary.csv")
    summary.to_csv(summary_csv, index=False)
    summary_md = _inside(out, "summary.md")
    summary_md.write_text("# Summary: accuracy by model, task, context length and depth\n\n"
                          + to_markdown(summary), encoding="utf-8")

    charts: list[Path] = []
    sections: list[str] = []
    for (model, task), stem in chart_stems(summary).items():
        written = _write_charts(df, out, model, task, stem)
        charts += written
        sections.append(_section(summary, df, model, task, [p.name for p in written if p.suffix == ".png"]))

    report_md = _inside(out, "report.md")
    text = "\n".join([*_preamble(dirs, headers, df), *sections, *_glossary()])
    report_md.write_text(text, encoding="utf-8")
    return ReportPaths(out, report_md, summary_md, summary_csv, tuple(charts))


# ---------------------------------------------------------------------------- file names


def slug(name: str) -> str:
    """A file-name-safe form of a model or task name: ``"org/Model-1.7B" -> "org-Model-1.7B"``."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "-", name)
    text = re.sub(r"\.{2,}", ".", text).strip("-._")
    return text or "x"


def chart_stems(summary: pd.DataFrame) -> dict[tuple[str, str], str]:
    """``(model, task) -> "<model>_<task>"`` slugs, made unique with a short hash on collision."""
    pairs = sorted({(str(m), str(t)) for m, t in zip(summary["model"], summary["task"])})
    stems: dict[tuple[str, str], str] = {}
    used: set[str] = set()
    for model, task in pairs:
        stem = f"{slug(model)}_{slug(task)}"
        if stem in used:
            digest = hashlib.sha1(f"{model}\0{task}".encode()).hexdigest()[:8]
            stem = f"{stem}-{digest}"
        used.add(stem)
        stems[(model, task)] = stem
    return stems


def _inside(out_dir: Path, name: str) -> Path:
    """``out_dir / name``, refusing any name that would resolve elsewhere."""
    path = out_dir / name
    if path.resolve().parent != out_dir.resolve():
        raise ValueError(f"report file name {name!r} would leave {out_dir}")
    return path


def _write_charts(df: pd.DataFrame, out: Path, model: str, task: str, stem: str) -> list[Path]:
    """Heatmap and line chart of one model x task; nothing when it has no completed trial."""
    sub = df[(df["model"] == model) & (df["task"] == task)]
    if not (sub["status"] == "ok").any():
        return []
    n_depths, n_lengths = sub["depth"].nunique(), sub["context_length"].nunique()
    fig = new_figure(max(6.0, 2.8 + 1.0 * n_lengths), max(4.0, 1.8 + 0.42 * n_depths))
    plot_heatmap(df, fig.add_subplot(), model, task)
    written = save_figure(fig, _inside(out, f"heatmap_{stem}"))
    fig = new_figure(8.5, 4.6)
    plot_accuracy_vs_depth(df, fig.add_subplot(), model, task)
    return written + save_figure(fig, _inside(out, f"accuracy_vs_depth_{stem}"))


# ---------------------------------------------------------------------------- report.md


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _pct(value: float) -> str:
    return f"{value * 100:.0f}%"


def _ci(low: float, high: float) -> str:
    return f"95% CI {low * 100:.0f}–{high * 100:.0f}%"


def _depth(value: float) -> str:
    return f"{value * 100:.4g}%"


def finding_text(summary: pd.DataFrame) -> str:
    """A plain-language paragraph on one model x task from its rows of ``summary_table``.

    Reports overall accuracy, the context length where depth matters most (worst vs best depth,
    ties going to the shallower depth), whether the two intervals overlap, and the length trend.
    """
    done = summary[summary["n"] > 0]
    skipped = int(summary["skipped"].sum())
    if done.empty:
        return f"No completed trials: {_count(skipped, 'trial was', 'trials were')} skipped."
    n, correct = int(done["n"].sum()), int(done["correct"].sum())
    sentences = [f"Over {n} trials the fact was found {_pct(correct / n)} of the time "
                 f"({_ci(*wilson_interval(correct, n))})."]
    sentences += _depth_sentences(done)
    by_length = done.groupby("context_length")[["correct", "n"]].sum().sort_index()
    if len(by_length) > 1:
        first, last = by_length.iloc[0], by_length.iloc[-1]
        sentences.append(
            f"Pooled over depths, accuracy was {_pct(first['correct'] / first['n'])} at "
            f"{by_length.index[0]} tokens and {_pct(last['correct'] / last['n'])} at {by_length.index[-1]} tokens."
        )
    if skipped:
        sentences.append(f"{_count(skipped, 'trial was', 'trials were')} skipped and not counted.")
    return " ".join(sentences)


def _depth_sentences(done: pd.DataFrame) -> list[str]:
    """Worst vs best depth at the length where depth changes accuracy most."""
    spreads = done.groupby("context_length")["accuracy"].agg(lambda a: a.max() - a.min() if len(a) > 1 else -1.0)
    if spreads.empty or spreads.max() < 0:
        return []
    if spreads.max() == 0:
        return ["Needle depth made no difference: at each context length, accuracy was the same at every depth."]
    length = max(spreads[spreads == spreads.max()].index)  # ties: the longest context
    cells = done[done["context_length"] == length].sort_values("depth")
    worst = cells.loc[cells["accuracy"].idxmin()]  # idxmin/idxmax take the first: the shallower depth
    best = cells.loc[cells["accuracy"].idxmax()]
    out = [
        f"At {length} tokens, facts at {_depth(worst['depth'])} depth were found {_pct(worst['accuracy'])} "
        f"of the time ({_ci(worst['ci_low'], worst['ci_high'])}) vs {_pct(best['accuracy'])} at "
        f"{_depth(best['depth'])} depth ({_ci(best['ci_low'], best['ci_high'])})."
    ]
    if worst["ci_high"] < best["ci_low"]:
        out.append("The two 95% intervals do not overlap, so the gap is unlikely to be sampling noise.")
    else:
        out.append("The two 95% intervals overlap, so the gap may be sampling noise; more samples per cell would tell.")
    edges = cells.iloc[[0, -1]]
    if worst["depth"] not in edges["depth"].tolist() and (edges["accuracy"] > worst["accuracy"]).all():
        out.append("Both ends of the context did better than the middle: the \"lost in the middle\" pattern.")
    return out


def _preamble(dirs: list[Path], headers: list[dict], df: pd.DataFrame) -> list[str]:
    """Title, links to the tables, and one metadata block per run directory."""
    lines = ["# evalkit report: where in the prompt is the fact still found?", "",
             "Tables: [summary.md](summary.md) · [summary.csv](summary.csv). "
             "Definitions are at the end.", "", "## Runs", ""]
    for run_dir, header in zip(dirs, headers):
        rows = df[df["run_dir"] == str(run_dir)]
        ok = int((rows["status"] == "ok").sum())
        versions = header.get("versions") or {}
        models = header.get("models") or {}
        lines += [
            f"### `{run_dir}`", "",
            f"- trials: {ok} ok, {len(rows) - ok} skipped",
            f"- config: `{header.get('config_path', '?')}` (hash `{header.get('config_hash', '?')}`), "
            f"seed {header.get('seed', '?')}, started {header.get('started_at', '?')}",
            "- models: " + (", ".join(f"`{m}` @ `{r or 'default'}`" for m, r in sorted(models.items())) or "?"),
            f"- evalkit {header.get('evalkit_version', '?')}; "
            + (", ".join(f"{k} {v}" for k, v in sorted(versions.items())) or "versions unknown"),
            "",
        ]
    if len({h.get("config_hash") for h in headers}) > 1:
        lines += ["These runs use different configs; rows of the same model and task are pooled.", ""]
    return lines


def _section(summary: pd.DataFrame, df: pd.DataFrame, model: str, task: str, pngs: list[str]) -> str:
    """Finding, both charts and the table rows of one model x task."""
    rows = summary[(summary["model"] == model) & (summary["task"] == task)]
    lines = [f"## `{model}` · `{task}`", "", finding_text(rows), ""]
    skipped = df[(df["model"] == model) & (df["task"] == task) & (df["status"] != "ok")]
    if not skipped.empty:
        reasons = skipped["skip_reason"].replace("", "no reason given").value_counts()
        lines += ["Skip reasons: " + "; ".join(f"{r} ({c})" for r, c in reasons.items()) + ".", ""]
    for name in pngs:
        kind = "Accuracy heatmap" if name.startswith("heatmap_") else "Accuracy vs needle depth"
        lines += [f"![{kind}: {model} · {task}]({name})", ""]
    lines += [to_markdown(rows.drop(columns=["model", "task"]).reset_index(drop=True)), ""]
    return "\n".join(lines)


def _glossary() -> list[str]:
    return [
        "## How to read this", "",
        "- **accuracy**: share of completed trials whose output contains the gold answer (normalised).",
        "- **95% CI**: Wilson score interval of that share; wide intervals mean too few samples per cell.",
        "- **depth**: share of the haystack's tokens placed before the needle (0% = start of the context, "
        "100% = right before the question); *achieved depth* is where the needle landed after snapping "
        "to a sentence boundary.",
        "- **context length**: total prompt tokens the model saw, chat template and question included.",
        "",
    ]

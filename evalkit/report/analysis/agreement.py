"""Trial-by-trial agreement of two runs of one grid (e.g. the same weights on transformers and on a served engine).

Trials are paired by their grid coordinates (task, length, depth, sample, control, layout axes), not by
model label or trial id, so two entries with different names still pair. Both trials of a pair must have
finished (``status == "ok"``). Reported: how many answers are equal (exact text), how many correctness
verdicts are equal, McNemar's exact test on the discordant verdicts (``a_only``: right in A only), and the
gold log-prob differences (B - A) over the pairs where both runs measured one; where a run has none
(a served engine gives none) the count is 0 and the reason is said.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from evalkit.report.analysis.recommend import mcnemar_exact

__all__ = ["PAIR_COLUMNS", "Agreement", "agreement", "agreement_rows", "format_agreement"]

# what makes two trials the same cell sample of the grid (the model label is left out on purpose)
PAIR_COLUMNS: tuple[str, ...] = (
    "task", "context_length", "depth", "sample", "control", "question_position", "instruction_position",
    "chat_template", "system_prompt", "context_markers", "answer_prefix",
)


@dataclass(frozen=True)
class Agreement:
    """Agreement of run B with run A over their paired finished trials."""

    pairs: int
    answers_equal: int
    correct_equal: int
    a_correct: int
    b_correct: int
    a_only: int  # right in A, wrong in B
    b_only: int
    mcnemar_p: float
    logprob_pairs: int  # pairs where both runs have a gold log-prob
    logprob_diff_mean: float | None  # mean of B - A gold log-prob sums; None: no pair has both
    logprob_diff_median: float | None
    logprob_diff_max_abs: float | None
    logprob_diff_p10: float | None = None  # 10th and 90th percentiles of B - A: the spread of the differences
    logprob_diff_p90: float | None = None


def _finished(df: pd.DataFrame) -> pd.DataFrame:
    frame = df[df["status"] == "ok"]
    keys = [c for c in PAIR_COLUMNS if c in frame.columns]
    return frame.drop_duplicates(keys, keep="last").set_index(keys)


def agreement(a: pd.DataFrame, b: pd.DataFrame) -> Agreement:
    """Pair ``load_results`` frames of two runs and count their agreement (see the module doc)."""
    left, right = _finished(a), _finished(b)
    joined = left.join(right, how="inner", lsuffix="_a", rsuffix="_b")
    ca, cb = joined["correct_a"].astype(bool), joined["correct_b"].astype(bool)
    a_only, b_only = int((ca & ~cb).sum()), int((~ca & cb).sum())
    diff = (joined["gold_logprob_sum_b"].astype("Float64") - joined["gold_logprob_sum_a"].astype("Float64")).dropna()
    has = len(diff) > 0
    return Agreement(
        pairs=len(joined), answers_equal=int((joined["generated_a"] == joined["generated_b"]).sum()),
        correct_equal=int((ca == cb).sum()), a_correct=int(ca.sum()), b_correct=int(cb.sum()),
        a_only=a_only, b_only=b_only, mcnemar_p=mcnemar_exact(a_only, b_only), logprob_pairs=len(diff),
        logprob_diff_mean=float(diff.mean()) if has else None,
        logprob_diff_median=float(diff.median()) if has else None,
        logprob_diff_max_abs=float(diff.abs().max()) if has else None,
        logprob_diff_p10=float(diff.quantile(0.1)) if has else None,
        logprob_diff_p90=float(diff.quantile(0.9)) if has else None,
    )


def agreement_rows(result: Agreement) -> list[tuple[str, str]]:
    """(measure, value) rows of ``result``: the table ``evalkit agree`` prints and the report shows."""
    n = result.pairs

    def share(k: int) -> str:
        return f"{k} / {n} ({k / n:.1%})" if n else "0 / 0"

    if result.logprob_pairs:
        logprob = (f"{result.logprob_pairs} pairs: mean {result.logprob_diff_mean:+.4f}, median "
                   f"{result.logprob_diff_median:+.4f}, 10-90% {result.logprob_diff_p10:+.4f} to "
                   f"{result.logprob_diff_p90:+.4f}, max |d| {result.logprob_diff_max_abs:.4f}")  # fmt: skip
    else:
        logprob = "no pair has a gold log-prob in both runs (an engine that gives none records null)"
    return [
        ("paired finished trials", str(n)),
        ("answers equal (exact text)", share(result.answers_equal)),
        ("correctness equal", share(result.correct_equal)),
        ("correct in A / in B", f"{result.a_correct} / {result.b_correct}"),
        ("right in A only / in B only", f"{result.a_only} / {result.b_only} (McNemar exact p = {result.mcnemar_p:.3g})"),
        ("gold log-prob B - A", logprob),
    ]


def format_agreement(result: Agreement, label_a: str, label_b: str) -> str:
    """A small Markdown table of ``result`` (what ``evalkit agree`` prints)."""
    rows = agreement_rows(result)
    head = f"A = {label_a}\nB = {label_b}\n\n| measure | value |\n|---|---|\n"
    return head + "\n".join(f"| {k} | {v} |" for k, v in rows)

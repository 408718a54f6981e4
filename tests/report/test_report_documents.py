"""Report of documents tasks: the gold document position axis, Liu et al.'s table, paired position tests, the curve
shape, attention per document; all on hand-built run directories (K documents, the gold one at each position)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from report_fixtures import make_record, write_header, write_records

from evalkit.attention import PARTITION
from evalkit.report import control_rates, new_figure, write_report
from evalkit.report.analysis.attention import attention_data, t95
from evalkit.report.analysis.decision import model_decisions
from evalkit.report.analysis.document_attention import (
    attention_by_position,
    document_mass_table,
    gold_minus_distractor,
    gold_rank_table,
)
from evalkit.report.analysis.document_positions import (
    FLAT,
    PRIMACY,
    RECENCY,
    U_CURVE,
    curve_shape,
    document_position_table,
    middle_position,
    position_pairs,
)
from evalkit.report.charts.documents import (
    plot_accuracy_vs_document_position,
    plot_document_heatmap,
)
from evalkit.report.charts.safety_strip import plot_safety_strip
from evalkit.report.data.labels import add_variants
from evalkit.report.data.load import load_results
from evalkit.store.format import save_trial_attention
from evalkit.types import TrialAttention

DOC_TASK = "docs_qa"
DOC_TOKENS = 30  # every document is 30 tokens; the documents start at token 10
PREAMBLE_END = 10


def doc_spans(total: int) -> list[list[int]]:
    return [[PREAMBLE_END + i * DOC_TOKENS, PREAMBLE_END + (i + 1) * DOC_TOKENS] for i in range(total)]


def doc_record(sample: int, gold: int, total: int, correct: bool, model: str = "org/tiny-model",
               control: str = "", **overrides) -> dict:
    """One documents-task record: gold document at 0-based ``gold`` of ``total`` (the depth that chose it)."""
    spans = doc_spans(total)
    end = PREAMBLE_END + total * DOC_TOKENS
    start_g, end_g = spans[gold] if total else (PREAMBLE_END, PREAMBLE_END)
    values = dict(
        trial_id=f"{model.replace('/', '-')}-{control or gold}-{sample}", model=model, task=DOC_TASK,
        context_length=2048,
        prompt_tokens=end + 10, depth=gold / (total - 1) if total > 1 else 0.0, achieved_depth=0.0, sample=sample,
        correct=correct, exact_match=False, control=control, metric="liu", liu=correct, best_subspan_em=correct,
        gold_document_index=gold if total else None, documents_total=total, document_spans=spans,
        regions={"preamble": [0, PREAMBLE_END], "context_before": [PREAMBLE_END, start_g], "needle": [start_g, end_g],
                 "context_after": [end_g, end], "question": [end, end + 10]},
        needle_token_start=start_g, needle_token_end=end_g, generated="62" if correct else "no idea",
    )
    values.update(overrides)
    return make_record(**values)


def grid_records(right: dict[int, list[int]], total: int, samples: int, model: str = "org/tiny-model") -> list[dict]:
    """Placement records: at gold position p, the samples listed in ``right[p]`` are correct."""
    return [doc_record(s, p, total, s in right[p], model) for p in sorted(right) for s in range(samples)]


def control_records(closed_right: int, oracle_right: int, samples: int, model: str = "org/tiny-model") -> list[dict]:
    """Closed-book (no documents) and oracle (the gold document alone) records, the first ``*_right`` correct."""
    out = [doc_record(s, 0, 0, s < closed_right, model, control="closed_book") for s in range(samples)]
    return out + [doc_record(s, 0, 1, s < oracle_right, model, control="oracle") for s in range(samples)]


def write_doc_run(run_dir: Path, records: list[dict]) -> Path:
    write_header(run_dir, config={"models": ["org/tiny-model"], "tasks": [DOC_TASK]})
    write_records(run_dir, records)
    return run_dir


def doc_arrays(masses: list[float], gold: int, heads: int = 2, spread: float = 0.02) -> TrialAttention:
    """Arrays of one trial whose answer step (row 0) puts ``masses[i]`` on document i, mean over heads: head h gets
    ``masses[i] + spread`` or ``- spread`` so only the mean over heads is the value. Row 1 (a decode row) puts 0.9
    on every document, so a table reading another row than 0 shows it."""
    total = len(masses)
    spans = doc_spans(total)
    end = PREAMBLE_END + total * DOC_TOKENS
    g0, g1 = spans[gold]
    partition = [(0, 1), (1, PREAMBLE_END), (PREAMBLE_END, g0), (g0, g1), (g1, end), (end, end + 10),
                 (end + 10, end + 10)]
    bins = [(PREAMBLE_END, PREAMBLE_END + end // 2), (PREAMBLE_END + end // 2, end)]
    names = PARTITION + ("bin_00", "bin_01") + tuple(f"doc_{i:02d}" for i in range(total))
    mass = np.zeros((1, heads, 2, len(names)), dtype=np.float32)  # [layers, heads, rows, regions]
    docs = slice(len(PARTITION) + 2, len(names))
    for h in range(heads):
        mass[0, h, 0, docs] = np.asarray(masses) + (spread if h % 2 == 0 else -spread)
    mass[0, :, 1, docs] = 0.9
    mass[..., 3] = mass[..., docs][..., gold]  # the needle region is the gold document
    mass[..., 0] = 1.0 - mass[..., docs].sum(-1)  # the sink takes the rest
    return TrialAttention(mass=mass, remainder=np.zeros((1, heads, 2), dtype=np.float32),
                          argmax_position=np.zeros((1, heads, 2), dtype=np.int64),
                          argmax_token=np.zeros((1, heads, 2), dtype=np.int64), row_token=np.array([-1, -1]),
                          row_in_needle=np.array([False, False]), region_names=names,
                          spans=np.array(partition + bins + [tuple(s) for s in spans]), bins=2,
                          prompt_tokens=end + 10, documents=total)


def save_doc_arrays(run_dir: Path, record: dict, masses: list[float]) -> None:
    save_trial_attention(run_dir, record["trial_id"], doc_arrays(masses, record["gold_document_index"]))


# ---------------------------------------------------------------------------- hand computations


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval written out."""
    p = k / n
    centre, half = p + z * z / (2 * n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def cell(k: int, n: int) -> str:
    low, high = wilson(k, n)
    return f"{k / n * 100:.0f}% [{low * 100:.0f}–{high * 100:.0f}] (n={n})"


K, N = 4, 12
ALL, NONE, HALF = list(range(N)), [], list(range(6))
U_GRID = {0: ALL, 1: NONE, 2: HALF, 3: ALL}  # the middle of positions 0..3 is 1 (nearest 1.5, ties: the earlier)


def _report(tmp_path, grid, controls=(2, 11)):
    run = write_doc_run(tmp_path / "run", grid_records(grid, K, N) + control_records(*controls, N))
    return run, write_report(run, tmp_path / "report")


def test_position_table_cells_are_wilson_by_hand_with_controls(tmp_path):
    run, paths = _report(tmp_path, U_GRID)
    table = document_position_table(add_variants(load_results(run)))
    assert table["gold_document_index"].tolist() == [0, 1, 2, 3] and table["n"].tolist() == [N] * 4
    assert table["correct"].tolist() == [12, 0, 6, 12]
    np.testing.assert_allclose(table[["ci_low", "ci_high"]].iloc[2], wilson(6, 12), atol=1e-9)
    compact = [line.replace(" ", "").replace("\\", "") for line in paths.report_md.read_text().splitlines()]
    header = "|variant|position1|position2|position3|position4|closedbook|oracle|"
    assert header in compact
    row = "|org/tiny-model|" + "|".join(cell(k, N) for k in (12, 0, 6, 12, 2, 11)).replace(" ", "") + "|"
    assert row == compact[compact.index(header) + 2]
    markdown = paths.report_md.read_text()
    label = "accuracy (Liu et al.'s best-subspan EM)"
    assert label + " \\[95% CI\\] (n) by gold document position (1 = first of 4)" in markdown
    # the report says which metric it used and what that metric is
    assert ("Primary metric: Liu et al.'s best-subspan EM (`metric: liu`; the records' `correct` is this metric, "
            "and so is every accuracy of this task): Liu et al.'s best_subspan_em exactly as their code computes it"
            ) in markdown
    assert "|2,048|3of4|" + cell(6, N).replace(" ", "") + "|" in compact  # the per-variant cell table, 1-based
    assert any(line.startswith("|org/tiny-model|2,048|document2of4|") for line in compact)  # an example trial
    # the controls table and the glossary name the metric their "accuracy" is
    assert f"*Other metrics, named wherever they are the accuracy: docs_qa: {label}*" in markdown
    assert "- **gold document position**: documents tasks (docs_qa)" in markdown


@pytest.mark.parametrize(("extra", "stated"), [
    (lambda record: {"self_answering_left_out": 53},
     "53 questions of the source contain their own answer by this metric (an echo of the question would score "
     "right, closed book included) and were left out of the samples (`documents.keep_self_answering: true` keeps"),
    (lambda record: {"self_answering": True} if record["sample"] in (3, 5) else {},
     "2 of the questions asked contain their own answer by this metric (an echo of the question scores right, "
     "closed book included): kept by `documents.keep_self_answering`."),
])
def test_the_report_states_the_self_answering_questions_left_out_or_kept(tmp_path, extra, stated):
    records = grid_records(U_GRID, K, N) + control_records(2, 11, N)
    run = write_doc_run(tmp_path / "run", [{**r, "extra": {**r["extra"], **extra(r)}} for r in records])
    assert stated in write_report(run, tmp_path / "report").report_md.read_text()


def test_paired_comparisons_and_u_curve_by_hand(tmp_path):
    run, paths = _report(tmp_path, U_GRID)
    pairs = position_pairs(add_variants(load_results(run))).set_index("comparison")
    first = pairs.loc["first_vs_middle"]
    # same 12 questions at positions 1 and 2: 12 right only at the first -> McNemar 2 * 0.5^12
    assert (first["position_a"], first["position_b"], first["pairs"]) == (0, 1, 12)
    assert (first["a_only"], first["b_only"]) == (12, 0)
    assert first["p_value"] == pytest.approx(2 * 0.5**12) and first["difference"] == 1.0
    assert pairs.loc["last_vs_middle", "position_a"] == 3 and pairs.loc["best_vs_worst", "position_b"] == 1
    assert curve_shape(pairs.reset_index()) == U_CURVE
    assert "U-curve (lost in the middle): paired by question, first (1 of 4) − middle (2 of 4): +100 pts" \
        in paths.report_md.read_text()


@pytest.mark.parametrize(("grid", "shape", "words"), [
    ({0: ALL, 1: NONE, 2: NONE, 3: NONE}, PRIMACY, "Primacy only: "),
    ({0: NONE, 1: NONE, 2: NONE, 3: ALL}, RECENCY, "Recency only: "),
    # no discordant pair, but 12 questions cannot bound a gap within 8 points: not called flat
    ({0: HALF, 1: HALF, 2: HALF, 3: HALF}, FLAT, "Not decided: neither end differs from the middle at 95%"),
    # 9 of 12 vs 6 of 12 on the same questions: 3 discordant pairs, p = 0.25: not a primacy effect
    ({0: list(range(9)), 1: HALF, 2: HALF, 3: HALF}, FLAT, "the gap may be sampling noise"),
])
def test_curve_shape_comes_from_the_paired_tests(tmp_path, grid, shape, words):
    run, paths = _report(tmp_path, grid)
    assert curve_shape(position_pairs(add_variants(load_results(run)))) == shape
    assert words in paths.report_md.read_text()


def test_middle_position_is_the_tested_interior_one_nearest_the_centre():
    assert middle_position([0, 2, 5, 7, 9], 10) == 5  # centre 4.5: 5 is 0.5 away (2 and 7 are further)
    assert middle_position([0, 4, 9, 14, 19], 20) == 9
    assert middle_position([0, 1, 2, 3], 4) == 1  # 1 and 2 tie: the earlier
    assert middle_position([0, 9], 10) is None


def test_charts_are_labelled_by_gold_document_position(tmp_path):
    run = write_doc_run(tmp_path / "run", grid_records(U_GRID, K, N) + control_records(2, 11, N))
    df = add_variants(load_results(run))
    table, controls = document_position_table(df), control_rates(df)
    fig = new_figure()
    ax = plot_accuracy_vs_document_position(table, fig.add_subplot(), "org/tiny-model", DOC_TASK,
                                            "liu", controls)
    assert ax.get_xlabel() == "gold document position (1 = first of 4)"
    assert ax.get_ylabel() == "accuracy (Liu et al.'s best-subspan EM) (%)"
    assert list(ax.get_xticks()) == [1, 2, 3, 4]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [100.0, 0.0, 50.0, 100.0])
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"closed book 17% (n=12)", "oracle 92% (n=12)"}
    fig = new_figure()
    ax = plot_document_heatmap(table, fig.add_subplot(), "org/tiny-model", DOC_TASK, "liu")
    assert ax.get_ylabel() == "gold document position (1 = first of 4)"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["1", "2", "3", "4"]


def test_needle_task_keeps_its_depth_axis_beside_a_documents_task(tmp_path):
    run = tmp_path / "run"
    needle = [make_record(trial_id=f"n{i}", depth=d, sample=i) for i, d in enumerate((0.0, 0.5, 1.0))]
    write_doc_run(run, grid_records(U_GRID, K, N) + needle)
    paths = write_report(run, tmp_path / "report")
    names = {p.name for p in paths.charts}
    assert "accuracy_vs_depth_org-tiny-model_passkey.png" in names
    assert "accuracy_vs_position_org-tiny-model_docs_qa.png" in names
    assert "accuracy_vs_depth_org-tiny-model_docs_qa.png" not in names
    markdown = paths.report_md.read_text()
    compact = [line.replace(" ", "").replace("\\", "") for line in markdown.splitlines()]
    assert any(line.startswith("|1,024|50%|100%[21–100](n=1)|") for line in compact)  # passkey's depth cells
    assert "Accuracy by gold document position" in markdown


def test_needle_only_report_has_no_documents_parts(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, [make_record(trial_id=f"n{i}", depth=d, sample=i) for i, d in enumerate((0.0, 0.5, 1.0))])
    paths = write_report(run, tmp_path / "report")
    markdown = paths.report_md.read_text()
    assert "gold document" not in markdown and "best-subspan" not in markdown and "Other metrics" not in markdown
    assert not any("position" in p.name and "indices" not in p.name for p in paths.files)


# ---------------------------------------------------------------------------- attention per document

# (sample, gold position) -> row-0 mass on documents 0, 1, 2 (mean over heads), and whether the answer was right
MASSES = {
    (0, 0): ([0.30, 0.10, 0.20], True), (0, 1): ([0.20, 0.25, 0.20], True), (0, 2): ([0.22, 0.12, 0.40], False),
    (1, 0): ([0.40, 0.10, 0.20], True), (1, 1): ([0.20, 0.15, 0.30], False), (1, 2): ([0.30, 0.10, 0.30], False),
}


@pytest.fixture()
def attention_run(tmp_path):
    records = [doc_record(s, g, 3, right) for (s, g), (_, right) in MASSES.items()]
    run = write_doc_run(tmp_path / "run", records + control_records(0, 2, 2))
    for record, (masses, _) in zip(records, MASSES.values()):
        save_doc_arrays(run, record, masses)
    return run


def _documents(run):
    return document_mass_table(attention_data(load_results(run)))


def test_attention_by_document_position_by_hand(attention_run):
    table = attention_by_position(_documents(attention_run)).set_index("position")
    # position 1: 0.10, 0.25, 0.12, 0.10, 0.15, 0.10 (row 0, mean of the two heads; row 1's 0.9 left out)
    assert table.loc[1, "mass"] == pytest.approx(0.82 / 6)
    assert table.loc[0, "gold_mass"] == pytest.approx(0.35) and table.loc[0, "distractor_mass"] == pytest.approx(0.23)
    assert (table.loc[0, "n"], table.loc[0, "n_gold"]) == (6, 2)


def test_gold_minus_distractor_is_paired_by_question_by_hand(attention_run):
    table = gold_minus_distractor(_documents(attention_run)).set_index("gold_document_index")
    # gold at 0: sample 0: 0.30 - mean(0.20, 0.22) = 0.09; sample 1: 0.40 - mean(0.20, 0.30) = 0.15
    assert table.loc[0, "difference"] == pytest.approx(0.12) and table.loc[0, "n"] == 2
    half = t95(1) * np.std([0.09, 0.15], ddof=1) / np.sqrt(2)
    assert table.loc[0, "diff_high"] == pytest.approx(0.12 + half)
    # gold at 1: 0.25 - mean(0.10, 0.12) = 0.14 and 0.15 - mean(0.10, 0.10) = 0.05; at 2: 0.20 and 0.05
    assert table.loc[1, "difference"] == pytest.approx(0.095) and table.loc[2, "difference"] == pytest.approx(0.125)
    assert table.loc[2, "distractor_mass"] == pytest.approx((0.20 + 0.25) / 2)


def test_gold_rank_predicts_correctness_by_hand(attention_run):
    row = gold_rank_table(_documents(attention_run)).iloc[0]
    # ranks: 1, 1, 1 | 1, 3 (0.15 < 0.20, 0.30), 1 (a tie with 0.30 is not above); top: 3 of 5 right, other 0 of 1
    assert (row["n_top"], row["correct_top"], row["n_other"], row["correct_other"]) == (5, 3, 1, 0)
    np.testing.assert_allclose((row["top_low"], row["top_high"]), wilson(3, 5), atol=1e-9)
    # gold mass, correct 0.30, 0.25, 0.40 vs wrong 0.40, 0.15, 0.30: (1.5 + 1 + 2.5) of 9 pairs ordered right
    assert row["auroc_mass"] == pytest.approx(5 / 9)
    assert row["auroc_rank"] == pytest.approx(6 / 9)  # each correct rank 1 ties two wrong rank-1s, beats the 3
    assert (row["mean_rank_correct"], row["mean_rank_wrong"]) == (1.0, pytest.approx(5 / 3))


def test_report_has_the_attention_per_document_section(attention_run, tmp_path):
    paths = write_report(attention_run, tmp_path / "report")
    markdown = paths.report_md.read_text()
    assert "#### Attention per document" in markdown
    png = tmp_path / "report" / "attention_documents_org-tiny-model_docs_qa.png"
    assert png in paths.charts and f"]({png.name})" in markdown
    for name in ("attention_documents.csv", "attention_gold_vs_distractor.csv", "attention_gold_rank.csv"):
        assert (tmp_path / "report" / name) in paths.tables
    compact = [line.replace(" ", "").replace("\\", "") for line in markdown.splitlines()]
    assert any(line.startswith("|1of3|2|35.00%|23.00%|12.00%[") for line in compact)
    assert "Accuracy with the gold document top-attended 60% [23–88] (n=5) vs 0% [0–79] (n=1) otherwise: +60 pts [" \
        in markdown.replace("\\", "")


def test_decision_block_reads_gold_document_positions(tmp_path):
    run, paths = _report(tmp_path, U_GRID)
    df = add_variants(load_results(run))
    (decision,) = model_decisions(df, control_rates(df))
    assert decision.documents_total == K
    # positions 1 and 4: 12 of 12 (Wilson lower 76% >= 70%: safe); 2 and 3: 0 and 6 of 12 (upper < 75%: danger)
    safe, danger = cell(12, 12).replace(" (n=12)", ""), cell(6, 24).replace(" (n=24)", "")
    line = f"safe position 1 of 4 ({safe}, n=12), position 4 of 4 ({safe}, n=12) · danger positions 2–3 of 4 " \
           f"({danger}, n=24)"
    assert line in paths.report_md.read_text().replace("\\", "")
    fig = new_figure()
    ax = plot_safety_strip(decision, fig.add_subplot())
    assert ax.get_xlabel() == "gold document position (1 = first of 4); numbers: accuracy %"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "3", "4"]


def test_gold_rank_accuracy_counts_questions_not_trials():
    # 6 questions, each with its gold at both positions of 2 documents and top-attended; questions 0-2 right both times
    rows = []
    for trial, (sample, gold) in enumerate((s, g) for s in range(6) for g in (0, 1)):
        for position in (0, 1):
            rows.append(dict(model="m", task="docs", run_dir="r", layout="", context_length=512, sample=sample,
                             trial=trial, documents_total=2, gold_document_index=gold, position=position,
                             mass=0.6 if position == gold else 0.2, is_gold=position == gold, correct=sample < 3))
    row = gold_rank_table(pd.DataFrame(rows)).iloc[0]
    assert (row["n_top"], row["correct_top"], row["n_other"]) == (12, 6, 0)
    # each question agrees with itself at both positions: design effect 2, the interval of 3 of 6 questions
    np.testing.assert_allclose((row["top_low"], row["top_high"]), wilson(3, 6), atol=1e-9)


def test_documents_flat_within_a_bound_only_where_the_intervals_support_it(tmp_path):
    """Every one of 400 questions right at every position: flat within ±1 point, in the section and the decision
    block; 12 such questions stay "not decided" there."""
    many = 400
    run = write_doc_run(tmp_path / "run", grid_records({p: list(range(many)) for p in range(K)}, K, many))
    text = write_report(run, tmp_path / "report").report_md.read_text()
    assert "Flat within ±1 point at 95% (first (1 of 4) − middle (2 of 4): 0 pts" in text
    decision = text.split("**Decision.**")[1].split("\nTables: ")[0]
    assert "- **Shape by gold position at " in decision and "flat within ±1 point at 95%" in decision
    run, paths = _report(tmp_path / "few", {p: ALL for p in range(K)})
    decision = paths.report_md.read_text().split("**Decision.**")[1].split("\nTables: ")[0]
    assert "not decided: neither end differs from the middle at 95% and the intervals reach past ±8 points" \
        in decision


def test_the_decision_block_names_the_documents_shape(tmp_path):
    _run, paths = _report(tmp_path, {0: ALL, 1: NONE, 2: NONE, 3: NONE})
    decision = paths.report_md.read_text().split("**Decision.**")[1].split("\nTables: ")[0]
    (line,) = [line for line in decision.splitlines() if line.startswith("- **Shape by gold position at ")]
    assert "primacy at 95%, paired by question (first (1 of 4) − middle (2 of 4): +100 pts" in line

"""The shape of accuracy over depth, decided at 95% (evalkit/report/analysis/shape.py), and its decision line."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from report_fixtures import grid_records, write_header, write_records

from evalkit.report import write_report
from evalkit.report.analysis.indices import position_indices
from evalkit.report.analysis.document_positions import FLAT, MIDDLE_BEST, PRIMACY, RECENCY, U_CURVE, UNDECIDED
from evalkit.report.analysis.shape import classify, depth_shapes
from evalkit.report.data.labels import add_variants

ZERO = (0.0, -0.03, 0.03)


@pytest.mark.parametrize("primacy, recency, expected", [
    ((0.3, 0.1, 0.5), (0.4, 0.2, 0.6), (U_CURVE, None)),
    ((0.3, 0.1, 0.5), (0.0, -0.2, 0.2), (PRIMACY, None)),
    ((0.3, 0.1, 0.5), (-0.3, -0.5, -0.1), (PRIMACY, None)),  # the end below the middle: still the start's lead
    ((0.0, -0.2, 0.2), (0.4, 0.2, 0.6), (RECENCY, None)),
    ((-0.3, -0.5, -0.1), (0.0, -0.2, 0.2), (MIDDLE_BEST, None)),
    ((0.01, -0.061, 0.07), (0.0, -0.05, 0.049), (FLAT, 0.07)),  # the bound rounds up to whole points
    (ZERO, (0.0, -0.08, 0.08), (FLAT, 0.08)),  # exactly the limit is flat
    (ZERO, (0.0, -0.081, 0.05), (UNDECIDED, None)),
    ((0.1, -0.05, 0.25), (0.1, -0.05, 0.25), (UNDECIDED, None)),
])
def test_classify_reads_the_two_intervals(primacy, recency, expected):
    assert classify(primacy, recency) == expected


def test_a_smaller_flat_limit_turns_flat_into_undecided():
    assert classify(ZERO, (0.0, -0.06, 0.06), flat_limit=0.05) == (UNDECIDED, None)


def _indices(grid: dict) -> pd.DataFrame:
    return position_indices(add_variants(pd.DataFrame(grid_records(grid=grid))))


def test_depth_shapes_reads_position_indices_and_skips_a_length_without_an_end():
    grid = {(4096, 0.0): (30, 60), (4096, 0.5): (30, 60), (4096, 1.0): (60, 60),
            (1024, 0.0): (60, 60), (1024, 0.5): (60, 60)}  # 1,024 tokens tested no end band
    indices = _indices(grid)
    (shape,) = depth_shapes(indices, str(indices["variant"].iloc[0]))
    assert (shape.context_length, shape.shape) == (4096, RECENCY)
    assert shape.recency[0] == pytest.approx(0.5) and shape.recency[1] > 0
    assert shape.primacy[0] == 0 and shape.primacy[1] < 0 < shape.primacy[2]
    assert math.isclose(shape.primacy[1], -shape.primacy[2], abs_tol=1e-9)
    assert depth_shapes(indices, "another variant") == ()


def test_the_decision_block_states_the_shape_at_95_percent(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    write_records(run, grid_records(grid={(4096, 0.0): (30, 60), (4096, 0.5): (30, 60), (4096, 1.0): (60, 60)}))
    text = write_report([run], tmp_path / "out").report_md.read_text(encoding="utf-8")
    block = text.split("**Decision.**")[1].split("\nTables: ")[0]
    (line,) = [line for line in block.splitlines() if line.startswith("- **Shape at 4,096 tokens:**")]
    # brackets are escaped in Markdown
    assert r"recency at 95%: the end beats the middle (end − middle +50 pts \[+36, +62\])" in line
    assert r"the start does not (start − middle 0 pts \[−17, +17\])." in line


def test_lengths_all_undecided_share_one_line(tmp_path):
    run = tmp_path / "run"
    write_header(run)
    grid = {(length, depth): (1, 2) for length in (512, 1024) for depth in (0.0, 0.5, 1.0)}
    write_records(run, grid_records(grid=grid))
    text = write_report([run], tmp_path / "out").report_md.read_text(encoding="utf-8")
    block = text.split("**Decision.**")[1].split("\nTables: ")[0]
    shape = [line for line in block.splitlines() if line.startswith("- **Shape")]
    assert shape == ["- **Shape:** not decided at 512–1,024 tokens: neither end differs from the middle at 95% at "
                     "any tested length, and the intervals are too wide (past ±8 points) to call it flat; more "
                     "samples would tell (the indices are under \"Where in the prompt\")."]

"""Layout axes: the config grid, trial ids, labels, parts rearranged, records and report variants."""

from __future__ import annotations

import pytest

from conftest import write_config
from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.errors import ConfigError
from evalkit.config.layouts import DEFAULT_SYSTEM_PROMPT, Layout, LayoutGrid
from evalkit.prompt.layouts import apply_layout
from evalkit.run.plan import expand
from evalkit.tasks import load_task
from evalkit.types import PromptParts

GRID = dict(models=["m"], tasks=["passkey"], context_lengths=[128], depths=[0.0, 1.0], samples=2, output_dir="o")


def _ids(cfg):
    return {(t.sample, t.context_length, t.depth, t.layout): t.trial_id for t in expand(cfg, {"passkey": load_task("passkey")})}


def test_grid_is_the_cross_product_and_default_layout_keeps_ids():
    grid = LayoutGrid(question_position=["after", "before"], chat_template=[None, False])
    assert [layout.label(grid.varied_axes()) for layout in grid.layouts()] == [
        "question after, model's template setting", "question after, no chat template",
        "question before, model's template setting", "question before, no chat template"]
    plain = _ids(EvalConfig.model_validate(GRID))
    explicit = EvalConfig.model_validate({**GRID, "layout": {"question_position": ["after"]}})
    assert _ids(explicit) == plain and config_hash(explicit) == config_hash(EvalConfig.model_validate(GRID))
    wide = _ids(EvalConfig.model_validate({**GRID, "layout": {"question_position": ["after", "before", "both"]}}))
    assert len(wide) == 3 * len(plain)
    assert {k: v for k, v in wide.items() if k[3] == ()} == plain  # the default layout's trials keep their ids
    assert len(set(wide.values())) == len(wide)
    assert Layout.from_pairs(Layout(question_position="both").id_pairs()) == Layout(question_position="both")


def test_bad_axis_value_is_one_line_naming_the_field(tmp_path):
    path = write_config(tmp_path / "c.yaml", **GRID, layout={"question_position": ["after", "middle"]})
    with pytest.raises(ConfigError, match=r"c.yaml: layout.question_position\[1\]: 'middle' is not one of after, "
                                          r"before, both"):
        load_config(path)
    path = write_config(tmp_path / "c.yaml", **GRID, layout={"question_place": ["after"]})
    with pytest.raises(ConfigError, match="unknown key 'question_place'; did you mean 'question_position'"):
        load_config(path)


def test_apply_layout_sets_template_system_prompt_markers_and_prefix():
    parts = PromptParts("Read.", "N.", "Q?", "The key is", None, True)
    off = apply_layout(parts, Layout(chat_template=False, system_prompt=True, context_markers="xml",
                                     answer_prefix=False, question_position="both"), None)
    assert (off.use_chat_template, off.system_prompt, off.answer_prefix) == (False, DEFAULT_SYSTEM_PROMPT, "")
    assert (off.context_open, off.context_close, off.question_position) == ("<document>", "</document>", "both")
    assert apply_layout(parts, Layout(system_prompt=True), "Be brief.").system_prompt == "Be brief."
    assert apply_layout(parts, Layout(), "Be brief.") == parts


def test_run_records_layout_and_report_compares_layouts(tmp_path, tiny_model_dir):
    from evalkit.report.data.labels import add_variants
    from evalkit.report.data.load import load_results
    from evalkit.run.runner import run_eval

    path = write_config(
        tmp_path / "c.yaml", models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                                      "max_new_tokens": 8}],
        tasks=["passkey"], context_lengths=[160], depths=[0.0, 1.0], samples=1, output_dir=str(tmp_path / "run"),
        layout={"question_position": ["after", "before"], "context_markers": ["xml"]})
    summary = run_eval(load_config(path), path, quiet=True, write_report=False)
    df = load_results(summary.run_dir)
    labels = sorted(df["layout"])
    assert labels == ["question after, xml markers"] * 2 + ["question before, xml markers"] * 2
    assert (df["context_markers"] == "xml").all()
    assert sorted(df["question_position"]) == ["after", "after", "before", "before"]
    assert all("layout" not in e and "layout_axes" not in e for e in df["extra"])  # axes are typed columns
    assert (df["prompt_tokens"] == 160).all()
    assert add_variants(df)["variant"].nunique() == 2

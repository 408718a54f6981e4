"""The Runs section shows where and how long a run ran, and "not recorded" for runs written before."""

from __future__ import annotations

import dataclasses

from report_fixtures import MODEL, grid_records, write_header, write_records
from evalkit.report import write_report
from evalkit.report.document.run_environment import duration_text, environment_items, hardware_text
from evalkit.store.run_facts import GpuFacts, HardwareFacts, ModelFacts, SpecialToken

HARDWARE = HardwareFacts("AMD EPYC 9654 96-Core Processor", 16, 128 * 2**30,
                         (GpuFacts("NVIDIA H100 80GB HBM3", 80 * 2**30),), "12.4", "550.54.15")
FACTS = ModelFacts("0123abcd" * 8, (SpecialToken("bos", "<|im_start|>", 1), SpecialToken("eos", "<|im_end|>", 2)),
                   134_515_008)


def _run(tmp_path, **header):
    run = tmp_path / "run"
    write_header(run, **header)
    write_records(run, grid_records())
    return write_report([run], tmp_path / "out")


def test_runs_section_shows_hardware_model_facts_and_timing(tmp_path):
    paths = _run(tmp_path, hardware=dataclasses.asdict(HARDWARE), model_facts={MODEL: dataclasses.asdict(FACTS)},
                 finished_at="2025-01-01T01:02:03+00:00", eval_seconds=3725.0)
    runs = paths.report_md.read_text().split("## Runs", 1)[1]
    assert ("hardware: AMD EPYC 9654 96-Core Processor, 16 logical cores, 128.0 GiB RAM; "
            "GPU: NVIDIA H100 80GB HBM3 (80.0 GiB), CUDA 12.4, driver 550.54.15") in runs
    assert (f"model `{MODEL}`: 134,515,008 parameters; chat template sha256 `{'0123abcd' * 8}`; "
            "special tokens bos `<|im_start|>` (1), eos `<|im_end|>` (2)") in runs
    assert "finished: 2025-01-01T01:02:03+00:00; evaluation time (wall, all calls, checks and loading included): 1 h 2 min" in runs
    html = paths.report_html.read_text()
    assert "NVIDIA H100 80GB HBM3" in html and "134,515,008 parameters" in html
    assert "&lt;|im_start|&gt;" in html and "<|im_start|>" not in html  # token texts are escaped


def test_an_old_header_without_them_still_reports_not_recorded(tmp_path):
    paths = _run(tmp_path)  # the fixture's header predates these fields
    runs = paths.report_md.read_text().split("## Runs", 1)[1]
    assert "hardware: not recorded" in runs
    assert f"model `{MODEL}`: parameters, chat template and special tokens not recorded" in runs
    assert "finished: not recorded; evaluation time (wall, all calls, checks and loading included): not recorded" in runs


def test_items_without_gpu_template_or_parameter_count():
    cpu_only = HardwareFacts("Apple M2", 8, None)
    assert hardware_text(cpu_only) == "Apple M2, 8 logical cores, RAM not recorded; no GPU visible to torch"
    served = ModelFacts(None, (SpecialToken("eos", "</s>", None),), None)
    items = environment_items({"models": {"m": "r"}, "model_facts": {"m": dataclasses.asdict(served)}})
    text = "".join(p if isinstance(p, str) else p.text for p in items[1])
    assert text == "model m: parameters not recorded; no chat template; special tokens eos </s> (no id)"


def test_durations_read_in_the_largest_sensible_unit():
    assert [duration_text(s) for s in (4.25, 725, 7260)] == ["4.2 s", "12 min 5 s", "2 h 1 min"]


def test_trial_time_sums_every_records_seconds_per_model_whatever_the_header_says(tmp_path):
    """Interrupted calls and extra processes leave no wall time in the header; the records' seconds still count."""
    run = tmp_path / "run"
    write_header(run, eval_seconds=10.0)  # one short call recorded, the rest of the run was interrupted
    records = grid_records()
    for i, record in enumerate(records):
        record["elapsed_s"] = 30.0 if i % 2 else 40.0
    write_records(run, records)
    runs = write_report([run], tmp_path / "out").report_md.read_text().split("## Runs", 1)[1]
    total = sum(r["elapsed_s"] for r in records)
    assert (f"trial time (each record's own seconds, summed: every call and process counted, loading and checks "
            f"not): {MODEL} {duration_text(total)} over {len(records):,} trials (median 35.0 s)") in runs
    assert "evaluation time (wall, all calls, checks and loading included): 10.0 s" in runs

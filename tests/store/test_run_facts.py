"""The header's hardware, model facts and end: written by the store, read back typed, absent in old headers."""

from __future__ import annotations

import json

from evalkit.store.format import read_header, write_header
from evalkit.store.run_facts import (
    GpuFacts,
    HardwareFacts,
    ModelFacts,
    RunFacts,
    SpecialToken,
    hardware_row,
    run_facts,
    with_end,
)
from evalkit.store.run_store import RunStore, update_header

HARDWARE = HardwareFacts("Test CPU", 8, 16 * 2**30, (GpuFacts("Test GPU", 2**34),), "12.4", "550.54.15")
FACTS = ModelFacts("ab" * 32, (SpecialToken("bos", "<s>", 1), SpecialToken("eos", "</s>", 2)), 135_000_000)
CONTROL = ModelFacts("ab" * 32, FACTS.special_tokens, 135_000_000, init="random", init_seed=3)


def test_facts_round_trip_through_the_header(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.open({"config_hash": "h", "models": {"m": "r"}, "hardware": hardware_row(HARDWARE)})
        store.record_model("m", FACTS)  # before the first write: kept in the pending header
        store.write_header()
        store.record_model("other", ModelFacts(None))
        store.record_model("m (random init, seed 3)", CONTROL)
        store.record_end("2026-01-01T00:00:10+00:00", 10.0)
    facts = run_facts(read_header(tmp_path / "run"))
    models = {"m": FACTS, "other": ModelFacts(None), "m (random init, seed 3)": CONTROL}
    assert facts == RunFacts(HARDWARE, models, "2026-01-01T00:00:10+00:00", 10.0)
    assert [name for name, f in facts.models.items() if f.random_init] == ["m (random init, seed 3)"]


def test_a_resume_on_the_same_machine_does_not_warn_of_other_hardware(tmp_path, caplog):
    header = {"config_hash": "h", "models": {"m": "r"}, "hardware": hardware_row(HARDWARE)}
    with RunStore(tmp_path / "run") as store:
        store.open(header)
        store.write_header()
    with RunStore(tmp_path / "run") as store:  # the same machine's facts again: GPUs as a tuple, read back a list
        store.open({**header, "hardware": hardware_row(HARDWARE)})
    assert "other hardware" not in caplog.text
    other = HardwareFacts("Other CPU", 8, 16 * 2**30)
    with RunStore(tmp_path / "run") as store:
        store.open({**header, "hardware": hardware_row(other)})
    assert "resumed on other hardware" in caplog.text


def test_model_facts_from_before_init_read_as_pretrained():
    facts = run_facts({"model_facts": {"m": {"chat_template_sha256": None, "parameters": 5}}}).models["m"]
    assert facts.init == "pretrained" and facts.init_seed is None and not facts.random_init


def test_each_call_adds_its_seconds(tmp_path):
    write_header(tmp_path, {"config_hash": "h"})
    for end, seconds in (("2026-01-01T00:00:05+00:00", 5.0), ("2026-01-02T00:00:02+00:00", 2.5)):
        update_header(tmp_path, lambda h: with_end(h, end, seconds))
    facts = run_facts(read_header(tmp_path))
    assert facts.eval_seconds == 7.5 and facts.finished_at == "2026-01-02T00:00:02+00:00"


def test_a_run_that_wrote_nothing_records_no_end_and_leaves_no_directory(tmp_path):
    with RunStore(tmp_path / "run") as store:
        store.open({"config_hash": "h", "models": {}})
        store.record_end("2026-01-01T00:00:10+00:00", 1.0)
    assert not (tmp_path / "run").exists()


def test_an_old_header_reads_as_not_recorded_and_keeps_its_schema(tmp_path):
    (tmp_path / "header.json").write_text(json.dumps({"config_hash": "h", "seed": 1}))  # schema 1: no version
    assert run_facts(read_header(tmp_path)) == RunFacts()
    update_header(tmp_path, lambda h: {**h, "finished_at": "2026-01-01T00:00:00+00:00"})
    header = read_header(tmp_path)
    assert header["schema_version"] == 1 and run_facts(header).finished_at == "2026-01-01T00:00:00+00:00"


def test_malformed_values_read_as_not_recorded():
    header = {"hardware": {"cpu_cores": "eight", "ram_bytes": True, "gpus": [{"memory_bytes": 3}, "x"]},
              "model_facts": {"m": {"parameters": 1.5, "special_tokens": [{"role": "bos"}]}, "n": []},
              "finished_at": 3, "eval_seconds": "10"}
    facts = run_facts(header)
    assert facts.hardware == HardwareFacts(None, None, None)
    assert facts.models == {"m": ModelFacts(None)}
    assert facts.finished_at is None and facts.eval_seconds is None

"""Run directory: header check, append-only records, torn-line repair, exclusive lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from evalkit.errors import RunDirError
from evalkit.store.run_store import RunStore, repair_torn_tail
from evalkit.types import TrialRecord


def make_record(trial_id: str, **changes) -> TrialRecord:
    values = dict(
        trial_id=trial_id, status="ok", model="m", model_revision="r", task="passkey", context_length=256,
        prompt_tokens=256, length_tolerance_tokens=0, depth=0.5, achieved_depth=0.49, sample=0, seed=1,
        needle="The pass key is 12345.", question="What is the pass key?", gold_answer="12345",
        generated="12345", correct=True, exact_match=True, gold_logprob_sum=-1.0, gold_logprob_mean=-0.5,
        gold_first_token_is_argmax=True, gold_tokens=2, regions={"needle": [10, 20]}, needle_token_start=10,
        needle_token_end=20, prompt_sha256="abc", elapsed_s=0.1,
    )
    values.update(changes)
    return TrialRecord(**values)


HEADER = {"config_hash": "h1", "models": {"m": "r"}, "seed": 0}


def test_records_are_appended_and_found_on_reopen(tmp_path):
    with RunStore(tmp_path) as store:
        assert store.open(HEADER) == set()
        store.append(make_record("a"))
        store.append(make_record("b"))
    with RunStore(tmp_path) as store:
        assert store.open(HEADER) == {"a", "b"}
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert [json.loads(line)["trial_id"] for line in lines] == ["a", "b"]


def test_torn_last_line_is_cut_and_that_trial_is_not_done(tmp_path):
    with RunStore(tmp_path) as store:
        store.open(HEADER)
        store.append(make_record("a"))
    with open(tmp_path / "trials.jsonl", "a") as f:
        f.write('{"trial_id": "b", "status": "o')  # killed mid-write
    with RunStore(tmp_path) as store:
        assert store.open(HEADER) == {"a"}
        store.append(make_record("b"))
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert [json.loads(line)["trial_id"] for line in lines] == ["a", "b"]


def test_repair_leaves_complete_files_alone(tmp_path):
    path = tmp_path / "trials.jsonl"
    path.write_text('{"trial_id": "a"}\n')
    assert repair_torn_tail(path) == 0
    assert path.read_text() == '{"trial_id": "a"}\n'


def test_different_config_is_refused_with_a_way_out(tmp_path):
    with RunStore(tmp_path) as store:
        store.open(HEADER)
        store.append(make_record("a"))
    with pytest.raises(RunDirError, match="different config.*--output-dir"):
        with RunStore(tmp_path) as store:
            store.open({**HEADER, "config_hash": "h2"})
    # nothing already written is lost, and the lock was released
    assert (tmp_path / "trials.jsonl").read_text().count("\n") == 1
    assert not (tmp_path / "run.lock").exists()


def test_live_lock_is_refused_naming_the_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from evalkit.store.run_store import RunLock; "
         "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(30)", str(tmp_path)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunDirError, match=f"pid {holder.pid}"):
            RunStore(tmp_path).open(HEADER)
        assert not (tmp_path / "header.json").exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_naming_a_live_pid_but_not_locked_is_stale(tmp_path):
    # after a crash the pid in run.lock may belong to an unrelated live process: the kernel lock decides
    unrelated = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "run.lock").write_text(str(unrelated.pid))
        with RunStore(tmp_path) as store:
            store.open(HEADER)
            assert (tmp_path / "run.lock").read_text() == str(os.getpid())
    finally:
        unrelated.kill()
        unrelated.wait()


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "run.lock").write_text(str(dead.pid))
    with RunStore(tmp_path) as store:
        store.open(HEADER)
        assert (tmp_path / "run.lock").read_text() == str(os.getpid())
    assert not (tmp_path / "run.lock").exists()


def _prompt(tokens: int = 3):
    from evalkit.types import BuiltPrompt, TokenSpan

    return BuiltPrompt(input_ids=tuple(range(tokens)), regions={"needle": TokenSpan(1, 2)}, needle_text="b",
                       requested_context_length=tokens, length_tolerance_tokens=0, requested_depth=0.5,
                       achieved_depth=0.5, prompt_sha256="x")


def test_saved_prompts_keep_token_texts_and_older_or_broken_rows_still_read(tmp_path, caplog):
    from evalkit.store.saved_prompts import read_saved_prompts

    with RunStore(tmp_path) as store:
        store.open(HEADER)
        store.save_prompt("new", _prompt(), "a b<c>", ["a", " b", "<c>"])
        store.save_prompt("old", _prompt(), "a b<c>")  # a run before token texts were saved
        with pytest.raises(ValueError, match="2 token texts for 3 tokens"):
            store.save_prompt("short", _prompt(), "a b", ["a", " b"])
        store.append(make_record("new"))
        store.append(make_record("old"))
        store.append(make_record("edited"))
    with open(tmp_path / "prompts.jsonl", "a", encoding="utf-8") as f:  # hand-edited: one text short
        f.write(json.dumps({"trial_id": "edited", "input_ids": [0, 1, 2], "text": "ab", "token_texts": ["a", "b"]})
                + "\n")
    saved = read_saved_prompts(tmp_path)
    assert saved["new"]["token_texts"] == ["a", " b", "<c>"] and saved["new"]["text"] == "a b<c>"
    assert "token_texts" not in saved["old"] and saved["old"]["input_ids"] == [0, 1, 2]
    assert "token_texts" not in saved["edited"] and saved["edited"]["text"] == "ab"
    assert "trial edited: token_texts is not one string per input id" in caplog.text

"""Crash safety: `evalkit run` SIGKILLed at 20 random moments loses no trial and records none twice.

Each run is a child process forked from this (already warm) test process that calls the real CLI
entry point, ``evalkit.cli.main(["run", ...])``, and is killed with SIGKILL by the parent. Forking
skips the ~5-10 s of imports a fresh interpreter pays, so 20 kills fit in well under a minute; the
on-disk behaviour under an abrupt death is the same as for ``python -m evalkit`` (that path is killed
in tests/test_runner.py::test_killed_run_resumes_to_exactly_the_planned_trials).
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import write_config

KILLS = 20
SEED = 20260
CHILD_TIMEOUT_S = 120.0


def _grid(tmp_path: Path, model_dir: Path, run_dir: Path) -> Path:
    return write_config(
        tmp_path / f"{run_dir.name}.yaml",
        models=[{"name": str(model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
        tasks=["passkey"], context_lengths=[112, 128], depths=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0], samples=8, seed=5,
        output_dir=str(run_dir),
    )


def _fork_run(config_path: Path) -> int:
    """Start ``evalkit run CONFIG`` in a forked child; return its pid."""
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 99
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            sys.stdout = sys.stderr = open(os.devnull, "w")  # pytest's capture objects are not fd 1/2
            import torch

            torch.set_num_threads(1)  # the parent's thread pool does not survive fork; one thread is safe
            from evalkit.cli import main

            code = main(["run", str(config_path), "--quiet", "--no-report"])
        finally:
            os._exit(code)
    return pid


def _wait(pid: int, deadline: float) -> int:
    """Exit status of a child that ends by itself before ``deadline``."""
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"evalkit run (pid {pid}) did not finish within {CHILD_TIMEOUT_S} s")


def _complete_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _kill_after(pid: int, records: Path, lines: int, extra_sleep_s: float) -> bool:
    """SIGKILL ``pid`` once ``records`` has ``lines`` complete lines plus ``extra_sleep_s``; False if it ended first."""
    deadline = time.time() + CHILD_TIMEOUT_S
    while _complete_lines(records) < lines:
        if os.waitpid(pid, os.WNOHANG)[0]:
            return False
        if time.time() > deadline:
            break
        time.sleep(0.005)
    time.sleep(extra_sleep_s)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)  # reap, so the dead pid in run.lock is really gone
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _parse_all(path: Path, allow_torn_tail: bool) -> list[dict]:
    """Every line of a records file as JSON; a torn tail is allowed only right after a kill."""
    data = path.read_text(encoding="utf-8")
    lines = data.split("\n")
    tail = lines.pop()  # "" when the file ends with a newline
    assert allow_torn_tail or tail == "", f"torn tail left after a clean run: {tail[:80]!r}"
    return [json.loads(line) for line in lines]


def _tear_last_line(path: Path) -> str:
    """Simulate a write cut short: drop the second half of the last record (and its newline)."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    torn_id = json.loads(data[start:])["trial_id"]
    cut = start + (len(data) - start) // 2
    path.write_bytes(data[:cut])
    return torn_id


def _strip_timing(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "elapsed_s"} for row in rows]


def test_twenty_sigkills_lose_no_trial_and_match_an_uninterrupted_run(tmp_path, tiny_model_dir):
    from evalkit import cli  # noqa: F401
    from evalkit.run import runner  # noqa: F401  (warm the imports the children inherit)
    from evalkit.config.schema import load_config
    from evalkit.run.plan import expand
    from evalkit.run.preflight import check_model_limits, prepare_tasks

    # the uninterrupted reference run, in a child exactly like the killed ones
    reference_dir = tmp_path / "reference"
    ref_cfg = _grid(tmp_path, tiny_model_dir, reference_dir)
    assert _wait(_fork_run(ref_cfg), time.time() + CHILD_TIMEOUT_S) == 0
    reference = _parse_all(reference_dir / "trials.jsonl", allow_torn_tail=False)
    # a trial's time here (backend time x2 for prompt building and the write; ~15 ms on one CPU thread)
    trial_s = max(0.002, 2 * sum(r["elapsed_s"] for r in reference) / len(reference))

    run_dir = tmp_path / "killed"
    cfg_path = _grid(tmp_path, tiny_model_dir, run_dir)
    cfg = load_config(cfg_path)
    tasks = prepare_tasks(cfg, cfg_path)
    planned = [t.trial_id for t in expand(cfg, {n: t.spec for n, t in tasks.items()}, check_model_limits(cfg, cfg_path))]
    assert [r["trial_id"] for r in reference] == planned

    records = run_dir / "trials.jsonl"
    rng = random.Random(SEED)
    kills, torn, progress, natural_tears = 0, [], [], 0
    while kills < KILLS:
        before = _complete_lines(records)
        # land inside the trial loop: after 1-2 new records, plus a random slice of about the next trial
        killed = _kill_after(_fork_run(cfg_path), records, before + rng.randint(1, 2), rng.uniform(0.0, trial_s))
        assert killed, f"the run finished after {kills} kills; the grid is too small for {KILLS} kills"
        kills += 1
        natural_tears += not records.read_bytes().endswith(b"\n")  # killed in the middle of a write
        rows = _parse_all(records, allow_torn_tail=True)
        progress.append(len(rows))
        ids = [r["trial_id"] for r in rows]
        assert len(ids) == len(set(ids)), "a trial was recorded twice"
        assert set(ids) <= set(planned)
        # twice (after kill 7 and 15, or the next kill that did not itself tear a line): a write cut short
        if len(torn) < 2 and kills >= (7, 15)[len(torn)] and records.read_bytes().endswith(b"\n"):
            torn.append(_tear_last_line(records))
    assert len(set(r["trial_id"] for r in _parse_all(records, allow_torn_tail=True))) < len(planned)

    assert _wait(_fork_run(cfg_path), time.time() + CHILD_TIMEOUT_S) == 0
    final = _parse_all(records, allow_torn_tail=False)
    ids = [r["trial_id"] for r in final]
    assert ids == planned, "the final records are not exactly the planned trials, each once"
    assert len(torn) == 2 and all(ids.count(t) == 1 for t in torn)
    assert _strip_timing(final) == _strip_timing(reference)
    assert not (run_dir / "run.lock").exists()
    print(f"{kills} kills survived; records after each kill: {progress}; kills mid-write: {natural_tears}; "
          f"torn by the test: {len(torn)}; {len(planned)} planned, {len(final)} recorded, 0 lost")

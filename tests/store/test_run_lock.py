"""Exclusive run directory: a live run's directory is refused naming its pid; stale locks are taken over, by one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.cli import main
from evalkit.errors import RunDirError
from evalkit.store.run_store import LOCK_FILE, RunLock

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: one thread is fastest

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}


def test_second_run_into_a_live_run_dir_is_refused_naming_the_holder(tmp_path, tiny_model_dir, capsys):
    run_dir = tmp_path / "run"
    config = write_config(tmp_path / "cfg.yaml", models=[{"name": str(tiny_model_dir), "device": "cpu",
                          "dtype": "float32", "max_new_tokens": 8}], tasks=["passkey"], context_lengths=[128],
                          depths=[0.0, 0.5, 1.0], samples=1, output_dir=str(run_dir))
    # a live evalkit process holds the directory (the same lock a run takes)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from evalkit.store.run_store import RunLock; from pathlib import Path; "
         "lock = RunLock(Path(sys.argv[1])); lock.acquire(); print('held', flush=True); time.sleep(60)", str(run_dir)],
        env=_env(), stdout=subprocess.PIPE, text=True)
    try:
        run_dir.mkdir()
        assert holder.stdout.readline().strip() == "held"
        result = subprocess.run([sys.executable, "-m", "evalkit", "run", str(config), "--quiet"], cwd=REPO,
                                env=_env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        (line,) = result.stderr.strip().splitlines()
        assert f"held by a running evalkit process (pid {holder.pid})" in line and str(run_dir) in line
        assert not (run_dir / "trials.jsonl").exists() and not (run_dir / "header.json").exists()
    finally:
        holder.kill()
        holder.wait()
    # the holder died without releasing: its lock is stale and the next run takes it over
    assert (run_dir / LOCK_FILE).exists()
    assert main(["run", str(config), "--quiet", "--no-report"]) == 0
    assert "3 trials run" in capsys.readouterr().out and not (run_dir / LOCK_FILE).exists()


def test_a_stale_lock_is_taken_over_by_exactly_one_of_many_racing_runs(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rounds, racers = 5, 6
    for round_index in range(rounds):
        run_dir = tmp_path / f"r{round_index}"
        run_dir.mkdir()
        (run_dir / LOCK_FILE).write_text(str(dead.pid))
        read_end, write_end = os.pipe()
        children = []
        for _ in range(racers):
            pid = os.fork()
            if pid == 0:  # child: wait for the start signal, try to take the lock, hold it a moment
                os.close(write_end)
                os.read(read_end, 1)
                try:
                    RunLock(run_dir).acquire()
                    time.sleep(0.3)
                    os._exit(0)
                except RunDirError:
                    os._exit(3)
                except BaseException:
                    os._exit(4)
            children.append(pid)
        os.close(read_end)
        os.write(write_end, b"g" * racers)  # start them together
        os.close(write_end)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        assert sorted(codes) == [0] + [3] * (racers - 1), f"round {round_index}: exit codes {codes}"

"""Several processes on one run (evalkit/run/distributed.py): disjoint shares, own records files, one report.

The two-process test launches ``python -m torch.distributed.run --nproc_per_node 2 -m evalkit run`` on CPU:
the launcher ``accelerate launch`` uses on GPUs (on CPU accelerate would need MPI), so RANK, WORLD_SIZE,
LOCAL_RANK and MASTER_ADDR are set exactly as there, and the barrier goes through accelerate's PartialState.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import write_config
from evalkit.config.schema import ModelConfig, load_config
from evalkit.run.distributed import ProcessSlot, model_for_slot, shard_trials
from evalkit.errors import ConfigError
from evalkit.run.plan import expand
from evalkit.run.preflight import check_model_limits, prepare_tasks
from evalkit.store.run_store import read_record_lines
from evalkit.types import Trial

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:  # port 0 itself would give every worker its own rendezvous port
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_shares_are_disjoint_whole_reuse_groups_covering_the_plan() -> None:
    trials = [Trial(f"{s}{n}{d}", "m", "t", n, d, s, 10 + s) for s in range(3) for n in (64, 96) for d in (0, 0.5, 1)]
    shares = [shard_trials(trials, ProcessSlot(rank, 4, rank)) for rank in range(4)]
    ids = [t.trial_id for share in shares for t in share]
    assert sorted(ids) == sorted(t.trial_id for t in trials) and len(ids) == len(set(ids))
    for share in shares:
        for trial in share:  # a reuse group never straddles two processes
            assert all(t in share for t in trials if (t.seed, t.context_length) == (trial.seed, trial.context_length))
    assert {len(s) for s in shares} == {3, 6}


def test_device_map_with_several_processes_is_refused() -> None:
    with pytest.raises(ConfigError, match="device_map"):
        model_for_slot(ModelConfig(name="x", device_map="auto"), ProcessSlot(1, 2, 1), "c.yaml: models")
    assert model_for_slot(ModelConfig(name="x", device="cpu"), ProcessSlot(1, 2, 1), "c").device == "cpu"


def test_two_processes_split_the_run_and_the_report_merges_them(tmp_path, tiny_model_dir) -> None:
    path = write_config(
        tmp_path / "cfg.yaml", output_dir=str(tmp_path / "run"), tasks=["passkey"], samples=2, seed=7,
        models=[{"name": str(tiny_model_dir), "dtype": "float32", "device": "cpu", "max_new_tokens": 8}],
        context_lengths=[128], depths=[0.0, 1.0],
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
               "-m", "evalkit", "run", str(path), "--quiet"]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    run_dir = tmp_path / "run"
    files = sorted(p.name for p in run_dir.glob("trials*.jsonl"))
    assert files == ["trials.0.jsonl", "trials.1.jsonl"]
    per_file = [[r["trial_id"] for r in read_record_lines(run_dir / name)] for name in files]
    assert all(per_file) and not set(per_file[0]) & set(per_file[1])
    config = load_config(path)
    tasks = prepare_tasks(config, path)
    revisions = check_model_limits(config, path)
    planned = {t.trial_id for t in expand(config, {n: t.spec for n, t in tasks.items()}, revisions)}
    assert sorted(per_file[0] + per_file[1]) == sorted(planned)
    assert (run_dir / "report" / "report.md").is_file() and not list(run_dir.glob("run*.lock"))
    again = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("0 trials run, 2 already done") == 2, again.stdout

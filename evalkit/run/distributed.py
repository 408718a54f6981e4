"""Several processes on one run: ``accelerate launch -m evalkit run CONFIG`` (or torchrun, or RANK/WORLD_SIZE).

Every process plans the same trials, keeps the reuse groups whose index modulo the world size is its rank
(disjoint by trial id, a group never split across processes), loads its own copy of the model on
``cuda:<local rank>`` and appends to its own records file ``trials.<rank>.jsonl`` under its own lock;
the header is the same for all. Resume works per process (finished ids are read from every records
file), and ``evalkit report`` merges the files. The main process writes the report once all are done
(a barrier through accelerate when the launcher set up a process group; otherwise run ``evalkit report``),
and records the run's end in the header then too (no barrier: the end is not recorded).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from evalkit.config.schema import ModelConfig
from evalkit.errors import ConfigError
from evalkit.run.environment import utc_now
from evalkit.run.schedule import group_key
from evalkit.store.format import lock_name, prompts_name, records_name
from evalkit.store.run_facts import with_end
from evalkit.store.run_store import update_header
from evalkit.types import Trial

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProcessSlot:
    """This process's place among the launched ones."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def records_name(self) -> str:
        """Its records file: ``trials.jsonl`` alone, ``trials.<rank>.jsonl`` among several."""
        return records_name(self._file_rank)

    @property
    def lock_name(self) -> str:
        return lock_name(self._file_rank)

    @property
    def prompts_name(self) -> str:
        return prompts_name(self._file_rank)

    @property
    def _file_rank(self) -> int | None:
        """The rank in this process's file names (None: one process, plain names; see store/format.py)."""
        return None if self.world_size == 1 else self.rank


def current_slot() -> ProcessSlot:
    """The slot from the launcher's environment (RANK, WORLD_SIZE, LOCAL_RANK); one process without them."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError:
        raise ConfigError("RANK, WORLD_SIZE and LOCAL_RANK must be whole numbers; check the launcher's environment") from None
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"RANK={rank} is not within WORLD_SIZE={world}; check the launcher's environment")
    return ProcessSlot(rank, world, local)


def shard_trials(trials: Sequence[Trial], slot: ProcessSlot) -> list[Trial]:
    """This process's share of the full plan: whole reuse groups, round robin in plan order."""
    if slot.world_size == 1:
        return list(trials)
    index: dict[tuple, int] = {}
    for trial in trials:
        index.setdefault(group_key(trial), len(index))
    return [t for t in trials if index[group_key(t)] % slot.world_size == slot.rank]


def model_for_slot(model_cfg: ModelConfig, slot: ProcessSlot, label: str) -> ModelConfig:
    """The model entry as this process loads it: its own GPU when several processes share a machine."""
    if slot.world_size == 1:
        return model_cfg
    if model_cfg.device_map is not None:
        raise ConfigError(
            f"{label}: device_map {model_cfg.device_map!r} with {slot.world_size} processes: every process "
            "would spread over all GPUs; run one process (plain `evalkit run`) for models sharded by device_map"
        )
    import torch

    if model_cfg.device in ("auto", "cuda") and torch.cuda.is_available():
        return model_cfg.model_copy(update={"device": f"cuda:{slot.local_rank % torch.cuda.device_count()}"})
    return model_cfg


def wait_for_everyone(slot: ProcessSlot) -> bool:
    """Block until every process got here; False when no process group exists to wait on."""
    if slot.world_size == 1:
        return True
    if "MASTER_ADDR" not in os.environ:
        return False
    from accelerate import PartialState

    PartialState().wait_for_everyone()
    return True


def record_end_when_all_done(run_dir: Path, slot: ProcessSlot, started: float) -> bool:
    """Several processes: wait for every one, then the main one records the run's end and wall seconds since
    ``started`` (``time.perf_counter``) in the header; one process's own seconds are not the run's, so a single
    process records its end itself (``RunStore.record_end``). False when there is no process group to wait on."""
    if slot.world_size == 1:
        return True
    if not wait_for_everyone(slot):
        return False
    if slot.is_main:
        update_header(run_dir, lambda header: with_end(header, utc_now(), time.perf_counter() - started))
    return True

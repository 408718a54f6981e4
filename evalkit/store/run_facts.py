"""Where and how long a run ran: the header's hardware, per-model facts and end time, as typed records.

``header.json`` keeps them under four keys, beside what defines the run (``store/format.py``)::

    hardware      {"cpu_model", "cpu_cores", "ram_bytes", "gpus": [{"name", "memory_bytes"}], "cuda_runtime",
                   "gpu_driver"}    the machine that started the run (``run/environment.py`` reads it)
    model_facts   {model label: {"chat_template_sha256", "special_tokens": [{"role", "text", "id"}], "parameters",
                   "init", "init_seed"}}  written when the model is loaded; ``init`` is "pretrained" or "random" (the
                   untrained control, whose accuracy reports do not present as a retrieval result)
    finished_at   ISO time the last call of ``evalkit run`` on this directory ended
    eval_seconds  wall seconds of every call on this directory from its start (checks and loading included) to
                  the end of its trials, summed (a killed call adds nothing)

Run directories written before these keys existed have none of them: ``run_facts`` reads such a header (and
any value of the wrong type) as "not recorded", so old runs load and report unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

HARDWARE_KEY, MODEL_FACTS_KEY, FINISHED_KEY, EVAL_SECONDS_KEY = "hardware", "model_facts", "finished_at", "eval_seconds"
SPECIAL_TOKEN_ROLES = ("bos", "eos", "pad", "unk")


@dataclass(frozen=True)
class GpuFacts:
    """One visible GPU."""

    name: str
    memory_bytes: int | None


@dataclass(frozen=True)
class HardwareFacts:
    """The machine a run started on; None where the platform does not say."""

    cpu_model: str | None
    cpu_cores: int | None  # logical cores (os.cpu_count)
    ram_bytes: int | None
    gpus: tuple[GpuFacts, ...] = ()  # empty: no GPU visible to torch (or torch without CUDA)
    cuda_runtime: str | None = None  # the CUDA (or HIP) version torch was built with
    gpu_driver: str | None = None  # the NVIDIA kernel driver's version, where the platform exposes it


@dataclass(frozen=True)
class SpecialToken:
    """One of the tokenizer's special tokens (``role``: bos, eos, pad or unk)."""

    role: str
    text: str
    id: int | None


@dataclass(frozen=True)
class ModelFacts:
    """What identifies a loaded model beyond its revision: template, special tokens, size."""

    chat_template_sha256: str | None  # sha256 of tokenizer.chat_template's text; None: the tokenizer has none
    special_tokens: tuple[SpecialToken, ...] = ()  # the roles the tokenizer sets, in SPECIAL_TOKEN_ROLES order
    parameters: int | None = None  # None: the backend cannot count them (a served engine)
    init: str = "pretrained"  # "random": the architecture with random weights (``ModelConfig.init``)
    init_seed: int | None = None  # the seed of random weights; None for pretrained ones

    @property
    def random_init(self) -> bool:
        """Whether the model ran with random weights (an untrained control)."""
        return self.init == "random"


@dataclass(frozen=True)
class RunFacts:
    """The facts of one header; None (or empty) for what the header does not record."""

    hardware: HardwareFacts | None = None
    models: dict[str, ModelFacts] = field(default_factory=dict)
    finished_at: str | None = None
    eval_seconds: float | None = None


def hardware_row(hardware: HardwareFacts) -> dict[str, Any]:
    """The JSON object of ``header["hardware"]``, shaped as it reads back (lists, not tuples), so a resume on
    the same machine compares equal to the header it wrote."""
    return json.loads(json.dumps(dataclasses.asdict(hardware)))


def model_facts_row(facts: ModelFacts) -> dict[str, Any]:
    """The JSON object of one model under ``header["model_facts"]``."""
    return dataclasses.asdict(facts)


def with_model_facts(header: dict[str, Any], model: str, facts: ModelFacts) -> dict[str, Any]:
    """``header`` with ``facts`` recorded for ``model`` (other models' facts kept)."""
    recorded = header.get(MODEL_FACTS_KEY)
    models = dict(recorded) if isinstance(recorded, dict) else {}
    models[model] = model_facts_row(facts)
    return {**header, MODEL_FACTS_KEY: models}


def with_end(header: dict[str, Any], finished_at: str, seconds: float) -> dict[str, Any]:
    """``header`` with this call's end time, and its wall seconds added to those of earlier calls."""
    before = _number(header.get(EVAL_SECONDS_KEY)) or 0.0
    return {**header, FINISHED_KEY: finished_at, EVAL_SECONDS_KEY: round(before + seconds, 3)}


def run_facts(header: dict[str, Any]) -> RunFacts:
    """The facts a header records; a missing or malformed value reads as not recorded (None)."""
    models = header.get(MODEL_FACTS_KEY)
    parsed = {str(name): _model_facts(row) for name, row in models.items()} if isinstance(models, dict) else {}
    finished = header.get(FINISHED_KEY)
    return RunFacts(
        hardware=_hardware(header.get(HARDWARE_KEY)),
        models={name: facts for name, facts in parsed.items() if facts is not None},
        finished_at=finished if isinstance(finished, str) else None,
        eval_seconds=_number(header.get(EVAL_SECONDS_KEY)),
    )


# --- tolerant reading: a hand-edited or truncated value is "not recorded", never a crash -------------------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _hardware(row: object) -> HardwareFacts | None:
    if not isinstance(row, dict):
        return None
    gpus = row.get("gpus") if isinstance(row.get("gpus"), (list, tuple)) else ()
    return HardwareFacts(
        cpu_model=_str(row.get("cpu_model")), cpu_cores=_int(row.get("cpu_cores")), ram_bytes=_int(row.get("ram_bytes")),
        gpus=tuple(GpuFacts(g["name"], _int(g.get("memory_bytes")))
                   for g in gpus if isinstance(g, dict) and isinstance(g.get("name"), str)),
        cuda_runtime=_str(row.get("cuda_runtime")), gpu_driver=_str(row.get("gpu_driver")),
    )  # fmt: skip


def _model_facts(row: object) -> ModelFacts | None:
    if not isinstance(row, dict):
        return None
    tokens = row.get("special_tokens") if isinstance(row.get("special_tokens"), (list, tuple)) else ()
    return ModelFacts(
        chat_template_sha256=_str(row.get("chat_template_sha256")),
        special_tokens=tuple(SpecialToken(t["role"], t["text"], _int(t.get("id"))) for t in tokens
                             if isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("text"), str)),
        parameters=_int(row.get("parameters")),
        # headers from before ``init`` existed ran trained weights
        init=_str(row.get("init")) or "pretrained", init_seed=_int(row.get("init_seed")),
    )  # fmt: skip

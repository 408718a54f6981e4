"""The Runs section's lines on where and how long a run ran: hardware, each model's facts, end and eval time.

They read the header through ``store/run_facts.run_facts``: a run directory written before these facts
were recorded shows "not recorded" on each line instead of failing.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from evalkit.report.document.blocks import Code, Inline, Text
from evalkit.store.run_facts import HardwareFacts, ModelFacts, run_facts

NOT_RECORDED = "not recorded"
GIB = 1024**3


def environment_items(header: dict[str, Any]) -> list[Text]:
    """Bullet items: the hardware, one per model (template hash, special tokens, parameters), the run's end."""
    facts = run_facts(header)
    models = sorted(set(facts.models) | set(header.get("models") or {}))
    items: list[Text] = ["hardware: " + (hardware_text(facts.hardware) if facts.hardware else NOT_RECORDED)]
    items += [model_item(name, facts.models.get(name)) for name in models]
    finished = facts.finished_at or NOT_RECORDED
    seconds = NOT_RECORDED if facts.eval_seconds is None else duration_text(facts.eval_seconds)
    items.append(f"finished: {finished}; evaluation time (wall, all calls, checks and loading included): {seconds}")
    return items


def hardware_text(hardware: HardwareFacts) -> str:
    """``"AMD EPYC 9654, 16 logical cores, 125.8 GiB RAM; GPU: NVIDIA H100 (79.1 GiB), CUDA 12.4, driver 550.54"``."""
    cpu = hardware.cpu_model or "CPU model not recorded"
    cores = f"{hardware.cpu_cores} logical cores" if hardware.cpu_cores else "cores not recorded"
    ram = f"{hardware.ram_bytes / GIB:.1f} GiB RAM" if hardware.ram_bytes else "RAM not recorded"
    text = f"{cpu}, {cores}, {ram}; "
    if not hardware.gpus:
        return text + "no GPU visible to torch"
    gpus = ", ".join(g.name + (f" ({g.memory_bytes / GIB:.1f} GiB)" if g.memory_bytes else "") for g in hardware.gpus)
    text += f"GPU{'s' if len(hardware.gpus) > 1 else ''}: {gpus}"
    if hardware.cuda_runtime:
        text += f", CUDA {hardware.cuda_runtime}"
    return text + f", driver {hardware.gpu_driver or NOT_RECORDED}"


def model_item(name: str, facts: ModelFacts | None) -> tuple[Inline, ...]:
    """``model NAME: 134,515,008 parameters; chat template sha256 HASH; special tokens bos TEXT (id), ...``; an
    untrained control's line starts ``random weights (init: random, seed N)``."""
    if facts is None:
        return ("model ", Code(name), f": parameters, chat template and special tokens {NOT_RECORDED}")
    size = f"{facts.parameters:,} parameters" if facts.parameters is not None else f"parameters {NOT_RECORDED}"
    template: tuple[Inline, ...] = (
        ("chat template sha256 ", Code(facts.chat_template_sha256)) if facts.chat_template_sha256
        else ("no chat template",))  # fmt: skip
    tokens: list[Inline] = []
    for token in facts.special_tokens:
        token_id = "no id" if token.id is None else token.id
        tokens += [*([", "] if tokens else []), f"{token.role} ", Code(token.text), f" ({token_id})"]
    init = f"random weights (init: random, seed {facts.init_seed}), " if facts.random_init else ""
    return ("model ", Code(name), f": {init}{size}; ", *template, "; special tokens ", *(tokens or ["none"]))


def duration_text(seconds: float) -> str:
    """``"42.0 s"``, ``"12 min 5 s"`` or ``"3 h 2 min"``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def trial_time_item(records: pd.DataFrame) -> str | None:
    """Per model, the records' own ``elapsed_s`` summed, with the median trial: the compute a run took whatever
    its calls and processes (the header's wall time misses an interrupted call's); None without timed records."""
    if "elapsed_s" not in records.columns:
        return None
    timed = records[pd.to_numeric(records["elapsed_s"], errors="coerce").notna()]
    if timed.empty:
        return None
    parts = []
    for model, rows in timed.groupby(timed["model"].astype("str"), sort=True):
        seconds = rows["elapsed_s"].astype(float)
        parts.append(f"{model} {duration_text(float(seconds.sum()))} over {len(rows):,} trials "
                     f"(median {duration_text(float(seconds.median()))})")
    return ("trial time (each record's own seconds, summed: every call and process counted, loading and checks "
            "not): " + "; ".join(parts))

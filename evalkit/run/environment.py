"""What the run header says about where a run ran: the machine, and each loaded model's template, tokens, size.

Read once per call (the machine) and once per loaded model; every probe is best effort, and what the
platform does not expose is None ("not recorded" in the report), never an error that stops a run.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.util
import json
import os
import platform
from pathlib import Path
from typing import Any

from evalkit.config.entries import ModelConfig
from evalkit.models.base import BackendInfo
from evalkit.store.run_facts import SPECIAL_TOKEN_ROLES, GpuFacts, HardwareFacts, ModelFacts, SpecialToken

CPUINFO = Path("/proc/cpuinfo")
MEMINFO_PAGES = ("SC_PAGE_SIZE", "SC_PHYS_PAGES")
NVIDIA_DRIVER = Path("/proc/driver/nvidia/version")  # "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15 ..."


def utc_now() -> str:
    """The UTC time to the second, as the header's ``started_at`` and ``finished_at`` hold it."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def hardware_facts() -> HardwareFacts:
    """The CPU, RAM and visible GPUs of this machine."""
    gpus, runtime = _torch_gpus()
    return HardwareFacts(cpu_model=_cpu_model(), cpu_cores=os.cpu_count(), ram_bytes=_ram_bytes(), gpus=gpus,
                         cuda_runtime=runtime, gpu_driver=_nvidia_driver() if gpus else None)


def model_facts(info: BackendInfo, entry: ModelConfig | None = None) -> ModelFacts:
    """The chat template's hash, the special tokens and the parameter count of a loaded model, and the init of
    its weights (``entry``'s: pretrained, or random with its seed; pretrained without an entry)."""
    tokenizer = info.tokenizer
    random_seed = entry.init_seed if entry is not None and entry.init == "random" else None
    return ModelFacts(chat_template_sha256=chat_template_sha256(getattr(tokenizer, "chat_template", None)),
                      special_tokens=special_tokens(tokenizer), parameters=info.parameters,
                      init="pretrained" if random_seed is None else "random", init_seed=random_seed)


def chat_template_sha256(template: Any) -> str | None:
    """sha256 of the template's UTF-8 text; a dict of named templates (older tokenizers) hashed as sorted JSON."""
    if not template:
        return None
    text = template if isinstance(template, str) else json.dumps(template, sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def special_tokens(tokenizer: Any) -> tuple[SpecialToken, ...]:
    """The bos, eos, pad and unk tokens the tokenizer sets (text and id), in that order."""
    out = []
    for role in SPECIAL_TOKEN_ROLES:
        text = getattr(tokenizer, f"{role}_token", None)
        if text is None:
            continue
        token_id = getattr(tokenizer, f"{role}_token_id", None)
        out.append(SpecialToken(role, str(text), token_id if isinstance(token_id, int) else None))
    return tuple(out)


def _cpu_model() -> str | None:
    """The CPU's model name: /proc/cpuinfo on Linux, else what ``platform`` says (may be just "arm")."""
    try:
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or None


def _ram_bytes() -> int | None:
    """Physical memory (pages x page size), where ``os.sysconf`` knows it (Linux, macOS)."""
    try:
        pages = [os.sysconf(name) for name in MEMINFO_PAGES]
    except (AttributeError, ValueError, OSError):
        return None
    return pages[0] * pages[1] if all(p > 0 for p in pages) else None


def _torch_gpus() -> tuple[tuple[GpuFacts, ...], str | None]:
    """The GPUs torch sees (name, memory) and the CUDA or HIP version it was built with."""
    if importlib.util.find_spec("torch") is None:
        return (), None
    import torch

    runtime = torch.version.cuda or getattr(torch.version, "hip", None)
    if not torch.cuda.is_available():
        return (), runtime
    # device properties need no context on the device: nothing is allocated on a GPU another process uses
    props = [torch.cuda.get_device_properties(i) for i in range(torch.cuda.device_count())]
    return tuple(GpuFacts(p.name, int(p.total_memory)) for p in props), runtime


def _nvidia_driver() -> str | None:
    """The NVIDIA kernel module's version from /proc (Linux); None elsewhere or without the driver."""
    try:
        line = NVIDIA_DRIVER.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return None
    words = line.split()
    return next((w for w in words if w[:1].isdigit() and "." in w), None)

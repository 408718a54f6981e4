"""Before any trial runs: can every model of the config be captured with the chosen kernel?

Each model is built on the ``meta`` device from its config alone (no weights, no memory) and capture is
attached and detached, so an unsupported family (Falcon, Mamba, ...) or a missing kernel is refused before the
run directory is touched.
"""

from __future__ import annotations

from pathlib import Path

from evalkit.attention.trial import attach_capture
from evalkit.config.schema import EvalConfig
from evalkit.errors import CaptureError
from evalkit.models import describe_model


def check_capture(config: EvalConfig, config_path: str | Path) -> None:
    """Raise CaptureError naming the config, the model entry and the family if capture cannot work."""
    if not config.attention.capture:
        return
    for index, model_cfg in enumerate(config.models):
        skeleton = _meta_model(describe_model(model_cfg).config, model_cfg.trust_remote_code)
        try:
            attach_capture(skeleton, config.attention).detach()
        except CaptureError as err:
            raise CaptureError(f"{config_path}: models[{index}] ({model_cfg.name}): {err}") from None


def _meta_model(hf_config, trust_remote_code: bool):
    """The model class of ``hf_config`` instantiated on the meta device (shapes only)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(hf_config, trust_remote_code=trust_remote_code)

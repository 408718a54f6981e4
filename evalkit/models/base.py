"""The backend interface the runner talks to: load a model, say what it can do, run typed requests.

In the spirit of lm-eval's ``LM`` and inspect's ``ModelAPI``: one class per way of running a model
(``transformers_backend.TransformersBackend`` in process; a served HTTP backend can come later), each
with a ``Capabilities`` set the runner checks against the config before the run directory exists.
Nothing here is specific to transformers or torch: requests are token ids, outputs are ``TrialOutput``.

    Backend.load(model entry, capture)  -> a backend holding one model
    backend.info                        -> label, revision, max context, tokenizer for placement
    backend.run([TrialRequest, ...])    -> [TrialOutput, ...]  (one request: one trial; several: a batch)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from evalkit.types import TrialOutput

if TYPE_CHECKING:
    from evalkit.config.schema import ModelConfig

__all__ = ["Backend", "BackendInfo", "Capabilities", "CalibrationRequest", "CaptureRequest", "CapturedRows", "TrialRequest"]


@dataclass(frozen=True)
class Capabilities:
    """What a backend class can do; the runner refuses a config that asks for more (``run/preflight.py``)."""

    token_prompts: bool  # takes prompts as token ids (placement is exact only then)
    gold_logprobs: bool  # teacher-forced log-probs of the gold answer
    attention_capture: bool  # per-region attention mass at the last prompt token and decode steps
    prefix_reuse: bool  # keeps a shared prompt prefix between requests (``TrialRequest.prefix_tokens``)
    batching: bool  # several requests in one ``run`` call are run as one batch


@dataclass(frozen=True)
class CaptureRequest:
    """Attention capture for one request: key spans to sum over, and how many decode rows to record."""

    spans: tuple[tuple[int, int], ...]  # [start, end) key positions per region, in prompt tokens
    decode_steps: int  # rows after the last prompt token's (the first generated tokens)
    tokens: bool = False  # also each row's mass on every prompt token, averaged over heads
    token_layers: tuple[int, ...] = ()  # the layers whose per-token mass is kept (empty: all)


@dataclass(frozen=True, eq=False)
class CalibrationRequest:
    """Found-in-the-Middle calibration for one request (``attention/calibration.py``): ``log_bias`` is
    subtracted from the logits of each document's keys at every answer row, layer by layer and head by head."""

    spans: tuple[tuple[int, int], ...]  # [start, end) key positions of each document, in prompt tokens
    log_bias: np.ndarray  # [layers, heads, documents] float32: strength * log(positional bias); 0 = untouched
    answer_start: int  # the first calibrated query position (the last prompt token)


@dataclass(frozen=True)
class TrialRequest:
    """One prompt to run: what the backend needs, nothing about tasks or records."""

    input_ids: tuple[int, ...]  # the whole prompt, after the chat template
    gold_ids: tuple[int, ...]  # gold answer tokens scored after the prompt (at least one)
    max_new_tokens: int
    prefix_tokens: int = 0  # leading tokens shared with the next requests (reuse hint; 0: none)
    capture: CaptureRequest | None = None
    calibration: CalibrationRequest | None = None  # the calibrate_attention arm (a capture backend only)


@dataclass(frozen=True)
class CapturedRows:
    """What capture recorded for one request (``TrialOutput.attention``); rows never reached are NaN / -1."""

    mass: np.ndarray  # [layers, heads, rows, regions] float32 attention mass per key span
    argmax: np.ndarray  # [layers, heads, rows] int64 key position of each row's largest weight
    token_mass: np.ndarray | None = None  # [stored layers, rows, prompt_tokens] float16, when asked for
    token_layers: tuple[int, ...] = ()  # the layers of ``token_mass``


@dataclass(frozen=True, eq=False)
class BackendInfo:
    """What the runner and records need to know about the loaded model."""

    label: str  # the model entry's name
    revision: str  # commit hash, built-in package+GGUF hash, requested revision, or "unknown"
    max_context_tokens: int | None
    tokenizer: Any  # a transformers tokenizer: the prompt builder places the needle in its tokens
    stop_token_ids: tuple[int, ...]
    max_concurrency: int = 1  # requests it takes at once from separate threads (served: the engine's slots)
    parameters: int | None = None  # the model's parameter count; None where the backend cannot count them (served)


class Backend(Protocol):
    """One model behind the runner; state (caches, what was learned) lives on the instance."""

    name: ClassVar[str]  # the ``backend:`` value of a model entry
    capabilities: ClassVar[Capabilities]

    @classmethod
    def load(cls, cfg: ModelConfig, capture: Callable[[Any], Any] | None = None) -> Backend:
        """Load the model of ``cfg``; ``capture`` (capture on) attaches the attention recorder to it."""
        ...

    @property
    def info(self) -> BackendInfo:
        """Label, revision, context limit and tokenizer of the loaded model."""
        ...

    def run(self, requests: Sequence[TrialRequest]) -> list[TrialOutput]:
        """Run the requests (several at once only where ``capabilities.batching``), outputs in order."""
        ...

    def suggest_batch_size(self, context_length: int, requests: int) -> int:
        """A first batch size for ``requests`` prompts of ``context_length`` tokens (halved on out-of-memory)."""
        ...

    def reset(self) -> None:
        """Drop state shared between requests (after a failed request, or before a new group)."""
        ...

    def close(self) -> None:
        """Release hooks and caches; the backend is not used after this."""
        ...

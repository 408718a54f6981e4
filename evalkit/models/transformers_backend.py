"""The in-process Hugging Face transformers backend: one class behind ``models/base.Backend``.

Everything a model's trials share lives on the instance, so two backends never see each other's state
and nothing is kept in module globals:

    memory   the AnswerMemory of its model: the crop limit, probed before the first trial (so every trial
             takes the same path whatever ran before it), and the tail the model says after the gold answer
    prefix   the PrefixCache shared by consecutive requests with ``prefix_tokens`` (prefix reuse)
    capture  the attention recorder attached to the model when capture is on (``attention/capture.py``,
             handed in by the caller as a factory, so this module needs nothing from ``attention/``)

One request runs through ``single.run_prompt`` (one forward per trial on the draft path), several through
``batch.run_batch``. Drafts have a fixed length per (gold length, max_new_tokens): a resumed run feeds
each trial exactly as an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import numpy as np

from evalkit.config.schema import ModelConfig
from evalkit.errors import CaptureError
from evalkit.models.base import BackendInfo, Capabilities, CapturedRows, CaptureRequest, TrialRequest
from evalkit.models.batch import run_batch
from evalkit.models.draft import AnswerMemory
from evalkit.models.forward import probe_crop_limit
from evalkit.models.hf import LoadedModel, load_model
from evalkit.models.prefix import PrefixCache
from evalkit.models.single import run_prompt
from evalkit.models.sizing import auto_batch_size
from evalkit.types import TrialOutput

__all__ = ["TransformersBackend"]


class TransformersBackend:
    """A transformers model in this process: draft-path trials, prefix reuse, batches, attention capture."""

    name: ClassVar[str] = "transformers"
    capabilities: ClassVar[Capabilities] = Capabilities(
        token_prompts=True, gold_logprobs=True, attention_capture=True, prefix_reuse=True, batching=True
    )

    def __init__(self, loaded: LoadedModel, capture: Callable[[Any], Any] | None = None) -> None:
        """Wrap a loaded model; ``capture(model)`` (optional) attaches the attention recorder after the probe."""
        self.loaded = loaded
        # known before the first trial: the first trial drafts like every other (no classic warm-up)
        limit = probe_crop_limit(loaded.model, loaded.device)
        self.memory = AnswerMemory(crop_limit=limit, fixed_length=True)
        self.prefix = PrefixCache(loaded)
        # counted once: model.parameters() yields a tied weight once (quantised weights count as stored)
        self.parameters = sum(p.numel() for p in loaded.model.parameters())
        self.capture = capture(loaded.model) if capture is not None else None

    @classmethod
    def load(cls, cfg: ModelConfig, capture: Callable[[Any], Any] | None = None) -> TransformersBackend:
        """Load the model and tokenizer ``cfg`` names (``hf.load_model``) and wrap them."""
        return cls(load_model(cfg), capture)

    @property
    def info(self) -> BackendInfo:
        """Label, revision, context limit, tokenizer and stop ids of the loaded model."""
        loaded = self.loaded
        return BackendInfo(loaded.name, loaded.revision, loaded.max_context_tokens, loaded.tokenizer,
                           loaded.stop_token_ids, parameters=self.parameters)  # fmt: skip

    def run(self, requests: Sequence[TrialRequest]) -> list[TrialOutput]:
        """One request: one trial on the shared prefix; several: one batch (no reuse, no capture)."""
        if not requests:
            return []
        if len(requests) == 1:
            return [self._run_one(requests[0])]
        if any(r.capture is not None or r.calibration is not None for r in requests):
            raise ValueError("TransformersBackend.run: attention capture and calibration run one request at a time")
        return run_batch(self.loaded, [r.input_ids for r in requests], [r.gold_ids for r in requests],
                         max(r.max_new_tokens for r in requests))  # fmt: skip

    def attach(self, intervention: Callable[[Any], Any]) -> Any:
        """Attach a mitigation arm's hooks, ``intervention(model)``, and return its handle (the caller detaches it).

        Shared state is dropped first: a prefix cached without the hooks must not serve a request with them.
        """
        self.reset()
        return intervention(self.loaded.model)

    def suggest_batch_size(self, context_length: int, requests: int) -> int:
        """Free memory over a per-prompt estimate (``sizing.auto_batch_size``)."""
        return auto_batch_size(self.loaded.model, self.loaded.device, context_length, requests)

    def reset(self) -> None:
        """Drop what requests share: the prefix cache and the learned answer tail (the crop limit stays).

        Called before each reuse group and after a failed request (which leaves the cache in an
        unknown state), so a request's forwards depend only on the requests since the last reset.
        """
        self.prefix.reset()
        self.memory.tail = ()

    def close(self) -> None:
        """Detach capture and drop the prefix cache."""
        self.prefix.reset()
        if self.capture is not None:
            self.capture.detach()
            self.capture = None

    def _run_one(self, request: TrialRequest) -> TrialOutput:
        if request.calibration is None:
            return self._run_request(request)
        if self.capture is None:
            raise ValueError("TransformersBackend.run: a request asks for calibration, but no capture was attached")
        with self.capture.calibrate(request.calibration):  # every forward of the trial: prefill, draft, decode
            return self._run_request(request)

    def _run_request(self, request: TrialRequest) -> TrialOutput:
        reuse = {"prefix": self.prefix, "prefix_tokens": request.prefix_tokens} if request.prefix_tokens else {}
        if request.capture is None:
            return run_prompt(self.loaded, request.input_ids, request.gold_ids, request.max_new_tokens,
                              memory=self.memory, **reuse)  # fmt: skip
        if self.capture is None:
            raise ValueError("TransformersBackend.run: a request asks for capture, but none was attached")
        return self._run_captured(request, reuse)

    def _run_captured(self, request: TrialRequest, reuse: dict[str, Any]) -> TrialOutput:
        """The trial with a recording around its prompt forward and each of its first decode forwards."""
        import torch

        spec: CaptureRequest = request.capture  # type: ignore[assignment]
        spans = torch.tensor([list(spec.spans)], dtype=torch.long)  # [1, R, 2] absolute key positions
        last = torch.tensor([[len(request.input_ids) - 1]])
        prefill = self.capture.record(last, spans, tokens=spec.tokens)  # the last prompt token
        decodes: list[Any] = []

        def decode_step(k: int):
            if k > spec.decode_steps:
                return None
            one = torch.zeros((1, 1), dtype=torch.long)
            recording = self.capture.record(one, spans, tokens=spec.tokens)  # a decode feeds one token
            decodes.append(recording)
            return recording

        # decode rows need one forward per answer token; without them the answer comes from the draft forward
        output = run_prompt(self.loaded, request.input_ids, request.gold_ids, request.max_new_tokens,
                            memory=self.memory, prefill_context=prefill,
                            decode_context=decode_step if spec.decode_steps else None, **reuse)  # fmt: skip
        rows = _captured_rows([prefill, *decodes], spec.decode_steps + 1)
        if spec.tokens:
            token_mass, layers = stack_token_mass([prefill, *decodes], spec.decode_steps + 1,
                                                  len(request.input_ids), spec.token_layers)
            rows = dataclasses.replace(rows, token_mass=token_mass, token_layers=layers)
        return dataclasses.replace(output, attention=rows)


def _captured_rows(recordings: list[Any], rows: int) -> CapturedRows:
    """Row 0 of each recording stacked into [layers, heads, rows, ...] arrays; rows never reached stay NaN / -1."""
    first = recordings[0].mass  # [1, layers, heads, 1, R]
    layers, heads, regions = first.shape[1], first.shape[2], first.shape[4]
    mass = np.full((layers, heads, rows, regions), np.nan, dtype=np.float32)
    argmax = np.full((layers, heads, rows), -1, dtype=np.int64)
    for row, recording in enumerate(recordings):
        mass[:, :, row] = recording.mass[0, :, :, 0].float().cpu().numpy()
        argmax[:, :, row] = recording.argmax[0, :, :, 0].cpu().numpy()
    return CapturedRows(mass=mass, argmax=argmax)


def stored_layers(num_layers: int, chosen: Sequence[int]) -> tuple[int, ...]:
    """The layers whose per-token mass is kept: ``chosen`` (refusing ones the model lacks) or all of them."""
    layers = tuple(chosen) if chosen else tuple(range(num_layers))
    missing = [layer for layer in layers if not 0 <= layer < num_layers]
    if missing:
        raise CaptureError(f"attention.token_layers: {missing} not in this model's layers 0-{num_layers - 1}; "
                           "pick layers below its num_hidden_layers")
    return layers


def stack_token_mass(recordings: Sequence[Any], rows: int, prompt_tokens: int,
                     chosen: Sequence[int]) -> tuple[np.ndarray | None, tuple[int, ...]]:
    """``(token_mass [stored layers, rows, prompt_tokens] float16, layers)``; ``(None, ())`` when not recorded.

    Rows the trial never reached (generation stopped first) stay NaN.
    """
    first = getattr(recordings[0], "token_mass", None) if recordings else None
    if first is None:
        return None, ()
    layers = stored_layers(first.shape[1], chosen)
    out = np.full((len(layers), rows, prompt_tokens), np.nan, dtype=np.float32)
    for row, recording in enumerate(recordings):
        values = recording.token_mass[0, list(layers), 0, :prompt_tokens].float().cpu().numpy()  # [stored, keys]
        out[:, row, : values.shape[-1]] = values
    return out.astype(np.float16), layers

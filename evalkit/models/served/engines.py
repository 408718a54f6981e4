"""Per-engine routes: how one greedy completion of token ids, and one tokenization, is asked for.

    llama_cpp  llama.cpp's C++ ``llama-server``: ``POST /completion`` with ``prompt`` as a list of token ids
               (no BOS added to id prompts), ``return_tokens`` for the generated ids, ``tokens_evaluated``
               for the prompt length it saw; ``POST /tokenize`` (special tokens parsed) for the agreement check.
    openai     any OpenAI-compatible server: ``POST /v1/completions`` with ``prompt`` as a list of token ids
               (vLLM and llama-server accept it), ``usage.prompt_tokens`` for the prompt length;
               ``POST /tokenize`` (vLLM and llama-server both have it, with different field names: both are sent).

Greedy means the engine's argmax with nothing reshaping the logits: temperature 0 and every penalty off
(llama.cpp's default repeat penalty would otherwise change the answer). Neither route returns prompt
log-probs for given continuation tokens, so the gold log-prob stays ``None`` (see ``backend.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from evalkit.errors import ServerError
from evalkit.models.served.client import HttpClient

__all__ = ["ENGINES", "Completion", "Engine", "LlamaCppEngine", "OpenAIEngine"]


@dataclass(frozen=True)
class Completion:
    """One greedy completion as the engine reported it."""

    text: str
    token_ids: tuple[int, ...] | None  # None where the engine does not return ids (openai route)
    prompt_tokens: int | None  # the prompt length the server says it processed
    finish: str  # the engine's stop reason ("eos", "limit", "stop", "length", ...)


class Engine(Protocol):
    """One engine's routes over an ``HttpClient``."""

    name: str

    def health(self) -> None:
        """Return once the server answers its health route (raises like the client otherwise)."""
        ...

    def describe(self) -> str:
        """A short identity of the served model (for ``model_revision``)."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """The server's token ids of ``text``, special tokens parsed, nothing added."""
        ...

    def complete(self, input_ids: tuple[int, ...], max_new_tokens: int) -> Completion:
        """Greedy completion of the token-id prompt, at most ``max_new_tokens`` tokens."""
        ...


def _field(data: Any, key: str, route: str) -> Any:
    """``data[key]``, or a one-line ServerError saying the reply is not the expected shape."""
    if not isinstance(data, dict) or key not in data:
        raise ServerError(f"{route}: the reply has no {key!r} field (is served.engine right?): {str(data)[:200]}")
    return data[key]


@dataclass
class LlamaCppEngine:
    """llama.cpp ``llama-server``'s native routes."""

    client: HttpClient
    name: str = "llama_cpp"

    def health(self) -> None:
        """``GET /health`` (503 while loading: retried by the client)."""
        self.client.get("/health")

    def describe(self) -> str:
        """The GGUF file the server loaded (``/props`` ``model_path``), by name."""
        props = self.client.get("/props")
        path = str(props.get("model_path", "")) if isinstance(props, dict) else ""
        return f"llama.cpp:{path.rsplit('/', 1)[-1] or 'unknown'}"

    def tokenize(self, text: str) -> list[int]:
        """``POST /tokenize`` with special tokens parsed and no BOS added."""
        reply = self.client.post("/tokenize", {"content": text, "add_special": False, "parse_special": True})
        return [int(t) for t in _field(reply, "tokens", "/tokenize")]

    def complete(self, input_ids: tuple[int, ...], max_new_tokens: int) -> Completion:
        """``POST /completion`` with the ids as the prompt; greedy, penalties off, the prompt cache kept."""
        payload = {
            "prompt": list(input_ids), "n_predict": max_new_tokens, "temperature": 0.0, "top_k": 1,
            "repeat_penalty": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "dry_multiplier": 0.0,
            "cache_prompt": True, "return_tokens": True, "stream": False, "seed": 0,
        }  # fmt: skip
        reply = self.client.post("/completion", payload)
        tokens = _field(reply, "tokens", "/completion")
        evaluated = reply.get("tokens_evaluated")
        return Completion(text=str(_field(reply, "content", "/completion")), token_ids=tuple(int(t) for t in tokens),
                          prompt_tokens=int(evaluated) if evaluated is not None else None,
                          finish=str(reply.get("stop_type", "")))  # fmt: skip


@dataclass
class OpenAIEngine:
    """The OpenAI completions API with token-id prompts (vLLM, SGLang's OpenAI route, llama-server's /v1)."""

    client: HttpClient
    model: str | None = None
    name: str = "openai"

    def health(self) -> None:
        """``GET /v1/models`` (every OpenAI-compatible server has it)."""
        self.client.get("/v1/models")

    def describe(self) -> str:
        """The served model's id (``/v1/models``), or the configured name."""
        listed = self.client.get("/v1/models")
        ids = [str(m.get("id")) for m in listed.get("data", []) if isinstance(m, dict)] if isinstance(listed, dict) else []
        return f"openai:{self.model or (ids[0] if ids else 'unknown')}"

    def tokenize(self, text: str) -> list[int]:
        """``POST /tokenize``: vLLM reads ``prompt``, llama-server ``content``; both are sent."""
        payload: dict[str, Any] = {"prompt": text, "content": text, "add_special_tokens": False, "add_special": False}
        if self.model:
            payload["model"] = self.model
        reply = self.client.post("/tokenize", payload)
        return [int(t) for t in _field(reply, "tokens", "/tokenize")]

    def complete(self, input_ids: tuple[int, ...], max_new_tokens: int) -> Completion:
        """``POST /v1/completions`` with the ids as the prompt, temperature 0."""
        payload: dict[str, Any] = {"prompt": list(input_ids), "max_tokens": max_new_tokens, "temperature": 0.0,
                                   "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": 0}
        if self.model:
            payload["model"] = self.model
        reply = self.client.post("/v1/completions", payload)
        choice = _field(reply, "choices", "/v1/completions")[0]
        usage = reply.get("usage") or {}
        prompt_tokens = usage.get("prompt_tokens")
        return Completion(text=str(choice.get("text", "")), token_ids=None,
                          prompt_tokens=int(prompt_tokens) if prompt_tokens is not None else None,
                          finish=str(choice.get("finish_reason", "")))  # fmt: skip


ENGINES = ("llama_cpp", "openai")  # the values of ``served.engine``

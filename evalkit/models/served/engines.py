"""Per-engine routes: one greedy completion, one tokenization, and the gold answer's log-probs.

    llama_cpp  llama.cpp's C++ ``llama-server``: ``POST /completion`` with ``prompt`` as token ids (no BOS added
               to id prompts) or as text, ``return_tokens`` for the generated ids, ``tokens_evaluated`` for the
               prompt length it saw; ``POST /tokenize`` (``add_special``, ``parse_special``). Gold log-probs:
               the answer request asks ``n_probs`` with ``post_sampling_probs: false``, so each generated step
               comes back with the log-probs of its token and the top ``N_PROBS`` from the raw logits (the
               server's softmax runs before any sampler). While the greedy answer equals the gold, the gold's
               log-probs are read off it (the same forward passes); from the first step where it differs (or
               where the gold is not among the step's top ``N_PROBS``) on, one ``/completion`` per gold token,
               ``n_predict: 1`` on the prompt plus the gold tokens before it, the gold token forced by
               ``logit_bias`` (the reported probability is still the pre-bias one, the model's own). It asks the
               answer's ``N_PROBS`` too: the server's softmax sums the vocabulary in an order that depends on
               ``n_probs``, so another count rounds the same logits to a log-prob one float step apart.
               The prompt cache makes each forced request one token of prefill, evaluated as the answer's own
               decode step was, so the two sources agree to the bit; only a forced first gold token re-evaluates
               the prompt's last token alone, which llama.cpp's CPU kernels round differently from the batched
               prefill (measured up to 0.07 nats on SmolLM2 Q4_1).
    openai     any OpenAI-compatible server: ``POST /v1/completions`` with ``prompt`` as token ids or text,
               ``usage.prompt_tokens`` for the prompt length; ``POST /tokenize`` (vLLM reads ``prompt``,
               llama-server ``content``: both are sent). Gold log-probs: ``echo`` + ``logprobs`` on the prompt plus
               the gold ids (vLLM returns the prompt tokens' log-probs then, as lm-eval reads them); a server that
               refuses echo (llama-server does) is found by a probe at load and its records say so.
    sglang     see ``sglang.py``.

Greedy means the engine's argmax with nothing reshaping the logits: temperature 0 and every penalty off
(llama.cpp's default repeat penalty would otherwise change the answer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from evalkit.errors import ServerError
from evalkit.models.served.client import HttpClient
from evalkit.models.served.replies import ReplyReader

__all__ = ["Completion", "Engine", "LlamaCppEngine", "OpenAIEngine", "Prompt", "StepLogprobs", "gold_prefix_logprobs",
           "reply_field"]

Prompt = tuple[int, ...] | str  # token ids (the default route) or the decoded text (``served.prompt: text``)
FORCE_BIAS = 1000.0  # added to the gold token's logit so greedy picks it; the reported log-prob is pre-bias
N_PROBS = 10  # top log-probs asked per answer step: a gold token that greedy missed is often among them


@dataclass(frozen=True)
class StepLogprobs:
    """One generated step as the engine scored it: the token it picked, and log-probs of it and the top others."""

    token_id: int
    logprobs: Mapping[int, float]  # token id -> log-prob from the raw logits (the picked token included)


@dataclass(frozen=True)
class Completion:
    """One greedy completion as the engine reported it."""

    text: str
    token_ids: tuple[int, ...] | None  # None where the engine does not return ids (openai route)
    prompt_tokens: int | None  # the prompt length the server says it processed
    finish: str  # the engine's stop reason ("eos", "limit", "stop", "length", ...)
    steps: tuple[StepLogprobs, ...] = ()  # per generated step, where the engine reports log-probs (llama_cpp)


class Engine(Protocol):
    """One engine's routes over an ``HttpClient``."""

    name: str

    def health(self) -> None:
        """Return once the server answers its health route (raises like the client otherwise)."""
        ...

    def describe(self) -> str:
        """A short identity of the served model (for ``model_revision``)."""
        ...

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """The server's token ids of ``text``, special tokens parsed; ``add_special``: as a text prompt is."""
        ...

    def complete(self, prompt: Prompt, max_new_tokens: int, stop_ids: Sequence[int] = ()) -> Completion:
        """Greedy completion of the prompt, at most ``max_new_tokens`` tokens."""
        ...

    def gold_logprobs(self, input_ids: Sequence[int], gold_ids: Sequence[int],
                      answer: Completion | None = None) -> list[float]:
        """Log-prob of each gold token after the prompt and the gold tokens before it (teacher forcing).

        ``answer``: the prompt's greedy completion, just made; an engine may read what it already scored off it.
        """
        ...


def gold_prefix_logprobs(steps: Sequence[StepLogprobs], gold_ids: Sequence[int]) -> list[float]:
    """The gold tokens' log-probs that a greedy answer's steps already hold, from the first gold token on.

    Step k scored the gold token k after the prompt plus the answer's first k tokens; that is the gold's own
    context while the answer equals the gold, so reading stops after the first step whose token differs (its
    gold log-prob still counts when the gold is among that step's top log-probs) or that lacks the gold.
    """
    out: list[float] = []
    for step, gold in zip(steps, gold_ids):
        if int(gold) not in step.logprobs:
            break
        out.append(step.logprobs[int(gold)])
        if step.token_id != int(gold):
            break
    return out


def reply_field(data: Any, key: str, route: str) -> Any:
    """``data[key]``, or a one-line ServerError saying the reply is not the expected shape."""
    if not isinstance(data, dict) or key not in data:
        raise ServerError(f"{route}: the reply has no {key!r} field (is served.engine right?): {str(data)[:200]}")
    return data[key]


def _wire(prompt: Prompt) -> list[int] | str:
    return prompt if isinstance(prompt, str) else [int(i) for i in prompt]


GREEDY_LLAMA = {"temperature": 0.0, "top_k": 1, "repeat_penalty": 1.0, "presence_penalty": 0.0,
                "frequency_penalty": 0.0, "dry_multiplier": 0.0, "cache_prompt": True, "stream": False, "seed": 0}


@dataclass
class LlamaCppEngine:
    """llama.cpp ``llama-server``'s native routes."""

    client: HttpClient
    name: str = "llama_cpp"
    vocab_size: int | None = None  # the local tokenizer's: every id in a reply is checked against it

    @property
    def reader(self) -> ReplyReader:
        """Checks each value read off this engine's replies (replies.py)."""
        return ReplyReader(self.name, self.vocab_size)

    def health(self) -> None:
        """``GET /health`` (503 while loading: retried by the client)."""
        self.client.get("/health")

    def describe(self) -> str:
        """The GGUF file the server loaded (``/props`` ``model_path``), by name."""
        props = self.client.get("/props")
        path = props.get("model_path") if isinstance(props, dict) else None
        path = path if isinstance(path, str) else ""  # a label only: anything else is left out
        return f"llama.cpp:{path.rsplit('/', 1)[-1] or 'unknown'}"

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """``POST /tokenize`` with special tokens parsed; ``add_special`` adds BOS where the model's GGUF says to."""
        reply = self.client.post("/tokenize", {"content": text, "add_special": add_special, "parse_special": True})
        return list(self.reader.token_ids("/tokenize", "tokens", reply_field(reply, "tokens", "/tokenize")))

    def complete(self, prompt: Prompt, max_new_tokens: int, stop_ids: Sequence[int] = ()) -> Completion:
        """``POST /completion``; greedy, penalties off, the prompt cache kept (the engine stops at its EOG ids)."""
        payload = {"prompt": _wire(prompt), "n_predict": max_new_tokens, "return_tokens": True, "n_probs": N_PROBS,
                   "post_sampling_probs": False, **GREEDY_LLAMA}
        route, read = "/completion", self.reader
        reply = self.client.post(route, payload)
        tokens = read.token_ids(route, "tokens", reply_field(reply, "tokens", route), max_new_tokens)
        return Completion(text=read.text(route, "content", reply_field(reply, "content", route)), token_ids=tokens,
                          prompt_tokens=read.count(route, "tokens_evaluated", reply.get("tokens_evaluated")),
                          finish=read.label(route, "stop_type", reply.get("stop_type")),
                          steps=_steps(read, reply.get("completion_probabilities")))  # fmt: skip

    def gold_logprobs(self, input_ids: Sequence[int], gold_ids: Sequence[int],
                      answer: Completion | None = None) -> list[float]:
        """What ``answer`` already scored of the gold, then one forced request per gold token left (module doc)."""
        known = gold_prefix_logprobs(answer.steps, gold_ids) if answer is not None else []
        return known + self.forced_gold_logprobs(input_ids, gold_ids, start=len(known))

    def forced_gold_logprobs(self, input_ids: Sequence[int], gold_ids: Sequence[int], start: int = 0) -> list[float]:
        """One forced one-token completion per gold token from ``start`` on (the reference path, module doc)."""
        out: list[float] = []
        for k in range(start, len(gold_ids)):
            gold = gold_ids[k]
            payload = {"prompt": [int(i) for i in (*input_ids, *gold_ids[:k])], "n_predict": 1, "n_probs": N_PROBS,
                       "post_sampling_probs": False, "logit_bias": [[int(gold), FORCE_BIAS]], "return_tokens": True,
                       **GREEDY_LLAMA}
            probs = reply_field(self.client.post("/completion", payload), "completion_probabilities", "/completion")
            first = self.reader.items("/completion", "completion_probabilities", probs)[:1] or [{}]
            if first[0].get("id") != gold or "logprob" not in first[0]:
                raise ServerError(f"/completion: the forced gold token {gold} came back as {first[0].get('id')!r}; "
                                  "the server's logit_bias did not hold (is served.engine right?)")  # fmt: skip
            out.append(self.reader.logprob("/completion", "completion_probabilities[0].logprob", first[0]["logprob"]))
        return out


def _steps(read: ReplyReader, probs: Any) -> tuple[StepLogprobs, ...]:
    """``completion_probabilities`` as steps; () where the reply has none or another shape (forced requests then).

    Entries of the expected shape with a bad value (an id outside the vocabulary, a NaN log-prob) skip the trial.
    """
    if not isinstance(probs, list):
        return ()
    steps = []
    for i, entry in enumerate(probs):
        if not isinstance(entry, dict) or "id" not in entry or "logprob" not in entry:
            return ()
        field = f"completion_probabilities[{i}]"
        logprobs = {}
        for j, top in enumerate(entry.get("top_logprobs") or []):
            if isinstance(top, dict) and "id" in top and "logprob" in top:
                where = f"{field}.top_logprobs[{j}]"
                token = read.token_id("/completion", f"{where}.id", top["id"])
                logprobs[token] = read.logprob("/completion", f"{where}.logprob", top["logprob"])
        token = read.token_id("/completion", f"{field}.id", entry["id"])
        logprobs[token] = read.logprob("/completion", f"{field}.logprob", entry["logprob"])
        steps.append(StepLogprobs(token, logprobs))
    return tuple(steps)


@dataclass
class OpenAIEngine:
    """The OpenAI completions API (vLLM, SGLang's OpenAI route, llama-server's /v1)."""

    client: HttpClient
    model: str | None = None
    name: str = "openai"
    vocab_size: int | None = None  # the local tokenizer's: every id in a reply is checked against it

    @property
    def reader(self) -> ReplyReader:
        """Checks each value read off this engine's replies (replies.py)."""
        return ReplyReader(self.name, self.vocab_size)

    def health(self) -> None:
        """``GET /v1/models`` (every OpenAI-compatible server has it)."""
        self.client.get("/v1/models")

    def describe(self) -> str:
        """The served model's id (``/v1/models``), or the configured name."""
        listed = self.client.get("/v1/models")
        data = listed.get("data") if isinstance(listed, dict) else None
        models = data if isinstance(data, list) else []
        ids = [m["id"] for m in models if isinstance(m, dict) and isinstance(m.get("id"), str)]
        return f"openai:{self.model or (ids[0] if ids else 'unknown')}"

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """``POST /tokenize``: vLLM reads ``prompt``/``add_special_tokens``, llama-server ``content``/``add_special``."""
        payload: dict[str, Any] = {"prompt": text, "content": text, "add_special_tokens": add_special,
                                   "add_special": add_special, "parse_special": True}
        if self.model:
            payload["model"] = self.model
        reply = self.client.post("/tokenize", payload)
        return list(self.reader.token_ids("/tokenize", "tokens", reply_field(reply, "tokens", "/tokenize")))

    def _payload(self, prompt: Prompt, max_tokens: int) -> dict[str, Any]:
        payload: dict[str, Any] = {"prompt": _wire(prompt), "max_tokens": max_tokens, "temperature": 0.0,
                                   "top_p": 1.0, "presence_penalty": 0.0, "frequency_penalty": 0.0, "seed": 0}
        if self.model:
            payload["model"] = self.model
        return payload

    def complete(self, prompt: Prompt, max_new_tokens: int, stop_ids: Sequence[int] = ()) -> Completion:
        """``POST /v1/completions``, temperature 0 (the server stops at the model's eos)."""
        route, read = "/v1/completions", self.reader
        reply = self.client.post(route, self._payload(prompt, max_new_tokens))
        choice = read.items(route, "choices", reply_field(reply, "choices", route), empty=False)[0]
        usage = read.mapping(route, "usage", reply.get("usage"))
        return Completion(text=read.text(route, "choices[0].text", choice.get("text", "")), token_ids=None,
                          prompt_tokens=read.count(route, "usage.prompt_tokens", usage.get("prompt_tokens")),
                          finish=read.label(route, "choices[0].finish_reason",
                                            choice.get("finish_reason")))  # fmt: skip

    def gold_logprobs(self, input_ids: Sequence[int], gold_ids: Sequence[int],
                      answer: Completion | None = None) -> list[float]:
        """``echo`` + ``logprobs: 1`` over prompt + gold: the prompt tokens' log-probs, the gold's read off the end."""
        route, read = "/v1/completions", self.reader
        payload = {**self._payload(tuple(input_ids) + tuple(gold_ids), 1), "echo": True, "logprobs": 1}
        choice = read.items(route, "choices", reply_field(self.client.post(route, payload), "choices", route),
                            empty=False)[0]  # fmt: skip
        logprobs = read.mapping(route, "choices[0].logprobs", choice.get("logprobs")).get("token_logprobs") or []
        if not isinstance(logprobs, list):
            raise read.bad(route, "choices[0].logprobs.token_logprobs", logprobs, "a list of log-probabilities")
        start = len(input_ids)
        values = logprobs[start:start + len(gold_ids)]
        if len(values) != len(gold_ids) or any(v is None for v in values):
            raise ServerError("/v1/completions: echo gave no log-prob for every gold token "
                              f"({len(logprobs)} log-probs for {start + len(gold_ids)} prompt tokens)")  # fmt: skip
        field = "choices[0].logprobs.token_logprobs"
        return [read.logprob(route, f"{field}[{start + i}]", v) for i, v in enumerate(values)]

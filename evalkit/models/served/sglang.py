"""SGLang's native routes (``served.engine: sglang``), as its documentation describes them.

    POST /generate   ``input_ids`` (or ``text``) and ``sampling_params`` {``temperature: 0``, ``max_new_tokens``,
                     ``stop_token_ids``}; the reply has ``text``, ``output_ids`` and ``meta_info``
                     (``prompt_tokens``, ``finish_reason``). For the gold log-prob the prompt plus the gold ids go
                     with ``return_logprob: true`` and ``logprob_start_len`` = the prompt length: ``meta_info.
                     input_token_logprobs`` then holds ``[logprob, token_id, text]`` from that position on, and
                     the gold's are its last entries (``prompt_tokens = logprob_start_len + len(...)``).
    POST /tokenize   ``{"prompt", "add_special_tokens"}`` -> ``{"tokens": [...]}``.
    GET /health, GET /get_model_info (``model_path``).

Tested only against a fake server that checks these request shapes; not against a real SGLang.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from evalkit.errors import ServerError
from evalkit.models.served.client import HttpClient
from evalkit.models.served.engines import Completion, Prompt, reply_field
from evalkit.models.served.replies import ReplyReader

__all__ = ["SGLangEngine"]


@dataclass
class SGLangEngine:
    """SGLang ``/generate`` with token-id prompts."""

    client: HttpClient
    name: str = "sglang"
    vocab_size: int | None = None  # the local tokenizer's: every id in a reply is checked against it

    @property
    def reader(self) -> ReplyReader:
        """Checks each value read off this engine's replies (replies.py)."""
        return ReplyReader(self.name, self.vocab_size)

    def health(self) -> None:
        """``GET /health`` (an empty 200 once the model is loaded)."""
        self.client.get("/health")

    def describe(self) -> str:
        """The served model path (``/get_model_info``)."""
        info = self.client.get("/get_model_info")
        path = info.get("model_path") if isinstance(info, dict) else None
        path = path if isinstance(path, str) else ""  # a label only: anything else is left out
        return f"sglang:{path or 'unknown'}"

    def tokenize(self, text: str, add_special: bool = False) -> list[int]:
        """``POST /tokenize``."""
        reply = self.client.post("/tokenize", {"prompt": text, "add_special_tokens": add_special})
        return list(self.reader.token_ids("/tokenize", "tokens", reply_field(reply, "tokens", "/tokenize")))

    @staticmethod
    def _request(prompt: Prompt, max_new_tokens: int, stop_ids: Sequence[int]) -> dict[str, Any]:
        params = {"temperature": 0.0, "max_new_tokens": max_new_tokens, "stop_token_ids": [int(i) for i in stop_ids]}
        key = "text" if isinstance(prompt, str) else "input_ids"
        return {key: prompt if isinstance(prompt, str) else [int(i) for i in prompt], "sampling_params": params}

    def complete(self, prompt: Prompt, max_new_tokens: int, stop_ids: Sequence[int] = ()) -> Completion:
        """``POST /generate``, greedy, stopping at ``stop_ids``."""
        route, read = "/generate", self.reader
        reply = self.client.post(route, self._request(prompt, max_new_tokens, stop_ids))
        meta = read.mapping(route, "meta_info", reply_field(reply, "meta_info", route))
        ids = reply.get("output_ids")  # the stop id it ends at may come on top of max_new_tokens
        ids = None if ids is None else read.token_ids(route, "output_ids", ids, max_new_tokens + 1)
        finish = meta.get("finish_reason")
        if isinstance(finish, dict):  # {"type": "stop", "matched": ...}
            finish = finish.get("type")
        return Completion(text=read.text(route, "text", reply_field(reply, "text", route)), token_ids=ids,
                          prompt_tokens=read.count(route, "meta_info.prompt_tokens", meta.get("prompt_tokens")),
                          finish=read.label(route, "meta_info.finish_reason", finish))  # fmt: skip

    def gold_logprobs(self, input_ids: Sequence[int], gold_ids: Sequence[int],
                      answer: Completion | None = None) -> list[float]:
        """Input log-probs of the gold ids appended to the prompt (see the module doc; ``answer`` is not read)."""
        body = {**self._request(tuple(input_ids) + tuple(gold_ids), 1, ()), "return_logprob": True,
                "logprob_start_len": len(input_ids)}
        route, read = "/generate", self.reader
        meta = read.mapping(route, "meta_info", reply_field(self.client.post(route, body), "meta_info", route))
        field = "meta_info.input_token_logprobs"
        entries = read.items(route, field, meta.get("input_token_logprobs") or [], kind=list)
        tail = entries[-len(gold_ids):] if len(entries) >= len(gold_ids) else []
        if any(len(e) < 2 for e in tail):
            raise read.bad(route, field, tail, "a list of [logprob, token_id, ...] entries")
        if [e[1] for e in tail] != [int(g) for g in gold_ids] or any(e[0] is None for e in tail):
            raise ServerError(f"/generate: input_token_logprobs does not end with the gold ids {list(gold_ids)}: "
                              f"{str(entries[-len(gold_ids):])[:200]}")  # fmt: skip
        first = len(entries) - len(tail)
        return [read.logprob(route, f"{field}[{first + i}][0]", e[0]) for i, e in enumerate(tail)]

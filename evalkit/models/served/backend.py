"""``backend: served``: the model runs in a serving engine; evalkit sends the prompt and reads the answers.

Placement stays evalkit's: the prompt is built in the model's own tokens with the local tokenizer
(``served.tokenizer``, default the entry's ``name``), so the engine must tokenize exactly as that tokenizer
does. Before the first trial ``load`` checks it (a probe text with the chat template's special tokens,
tokenized on the server and locally) and refuses a mismatch; each trial then checks that the server
processed as many prompt tokens as were sent, and records that count (``extra.served_prompt_tokens``).

Prompts go as token ids (``served.prompt: token_ids``). For an engine that takes text only
(``served.prompt: text``) the prompt is decoded locally, the engine tokenizes that text (``/tokenize``, as its
completion route will) and the trial is skipped, with the reason, unless the ids equal the local ones.

Answers are greedy, cut after the first of the model's eos ids (as the transformers backend stops) and
decoded locally the same way. The gold answer's log-prob is asked of the engine for every trial
(``gold_logprobs``, always with token ids); where the engine refuses (a 4xx: echo not supported, a text-only
server) or answers in another shape, the record has ``gold_logprob_sum: null`` and the server's reason in
``extra.gold_logprob_reason``, never an invented number.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from evalkit.config.schema import ModelConfig
from evalkit.errors import ConfigError, ServerError, TrialFailed
from evalkit.models.base import BackendInfo, Capabilities, TrialRequest
from evalkit.models.hf import load_model_config, load_tokenizer, max_context_tokens_of
from evalkit.models.served.client import HttpClient
from evalkit.models.served.engines import Completion, Engine, LlamaCppEngine, OpenAIEngine, Prompt
from evalkit.models.served.launcher import ServerProcess
from evalkit.models.served.sglang import SGLangEngine
from evalkit.prompt.tokenization import decode_exact
from evalkit.types import TrialOutput

__all__ = ["ServedBackend", "check_tokenizer_agreement", "make_engine"]

# text for the agreement check: plain words, digits, accents, CJK and an emoji (byte fallback)
PROBE_TEXT = "The pass key is 71432. Où est-il caché? 東京 🙂\n  indented\tline"


def make_engine(cfg: ModelConfig, retries: int | None = None, timeout_s: float | None = None,
                vocab_size: int | None = None) -> Engine:
    """The engine routes ``cfg.served`` names, over a client with its timeout, retries and key variable.

    ``vocab_size``: the local tokenizer's, which every token id in a reply must fall within (replies.py).
    """
    served = cfg.served
    if served is None:
        raise ConfigError(f"models: {cfg.name}: backend: served needs a served: block with base_url")
    retries = served.retries if retries is None else retries
    client = HttpClient(served.base_url, served.timeout_s if timeout_s is None else timeout_s, retries,
                        served.api_key_env)
    if served.engine == "openai":
        return OpenAIEngine(client, served.model, vocab_size=vocab_size)
    if served.engine == "sglang":
        return SGLangEngine(client, vocab_size=vocab_size)
    return LlamaCppEngine(client, vocab_size=vocab_size)


def _probe_texts(tokenizer: Any) -> list[str]:
    """The probe, and the probe inside the chat template where there is one (its special tokens too)."""
    texts = [PROBE_TEXT]
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": PROBE_TEXT}]
        texts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return texts


def check_tokenizer_agreement(engine: Engine, tokenizer: Any, tokenizer_name: str) -> None:
    """ServerError (one line) unless the server tokenizes every probe text exactly as ``tokenizer``."""
    for text in _probe_texts(tokenizer):
        local = list(tokenizer.encode(text, add_special_tokens=False))
        try:
            remote = engine.tokenize(text)
        except TrialFailed as exc:  # before any trial: nothing to skip, the run cannot start
            raise ServerError(f"served.tokenizer: the server could not tokenize the probe text: {exc.reason}; "
                              "check that the server runs the model of served.tokenizer") from None
        if remote != local:
            at = _first_difference(local, remote)
            raise ServerError(
                f"served.tokenizer: the server tokenizes a probe text differently from {tokenizer_name} "
                f"({len(remote)} vs {len(local)} ids, first difference at id {at}): placement would not be exact; "
                "set served.tokenizer to the served model's own tokenizer"
            )


def _first_difference(a: Sequence[int], b: Sequence[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def _stop_ids(tokenizer: Any, model_config: Any) -> tuple[int, ...]:
    """The tokenizer's eos and the model config's eos id(s): the transformers backend's stop rule."""
    ids: list[int] = []
    for value in (getattr(tokenizer, "eos_token_id", None), getattr(model_config, "eos_token_id", None)):
        for token_id in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(token_id, int) and token_id not in ids:
                ids.append(token_id)
    return tuple(ids)


class ServedBackend:
    """A model behind an HTTP serving engine; requests of one ``run`` call go out concurrently."""

    name: ClassVar[str] = "served"
    capabilities: ClassVar[Capabilities] = Capabilities(
        # gold log-probs where the engine gives them (found at load); elsewhere null with the reason
        token_prompts=True, gold_logprobs=True, attention_capture=False, prefix_reuse=False, batching=True
    )

    def __init__(self, engine: Engine, info: BackendInfo, max_concurrency: int = 1,
                 process: ServerProcess | None = None, text_prompts: bool = False) -> None:
        """Wrap an engine whose tokenizer was checked against ``info.tokenizer`` (``process``: launched by us).

        ``text_prompts``: send the decoded text, checked per trial (``served.prompt: text``).
        """
        self.engine = engine
        self._info = info
        self.max_concurrency = max_concurrency
        self.process = process
        self.text_prompts = text_prompts

    @classmethod
    def load(cls, cfg: ModelConfig, capture: Callable[[Any], Any] | None = None) -> ServedBackend:
        """Start the server if ``served.serve`` says how, wait for it, load the local tokenizer, check agreement."""
        if capture is not None:
            raise ConfigError("attention.capture: backend 'served' cannot capture attention; set it to false")
        served = cfg.served
        process = ServerProcess(served.serve) if served is not None and served.serve else None
        try:
            if process is not None:
                process.wait_healthy(make_engine(cfg, retries=0).health, served.serve_wait_s)
            return cls._connect(cfg, process)
        except BaseException:  # also Ctrl-C: a server we started never outlives the run
            if process is not None:
                process.stop()
            raise

    @classmethod
    def _connect(cls, cfg: ModelConfig, process: ServerProcess | None) -> ServedBackend:
        served = cfg.served
        engine = make_engine(cfg)
        try:
            engine.health()
        except TrialFailed as exc:  # before any trial: nothing to skip, the run cannot start
            raise ServerError(f"served.base_url: {exc.reason}; start the server or fix the address") from None
        tokenizer = load_tokenizer(cfg)  # ``served.tokenizer`` where given (``hf`` resolves it), else ``name``
        engine = make_engine(cfg, vocab_size=len(tokenizer))  # from here every reply's ids are checked
        check_tokenizer_agreement(engine, tokenizer, served.tokenizer or cfg.name)
        model_config = load_model_config(cfg)
        info = BackendInfo(cfg.name, engine.describe(), max_context_tokens_of(model_config, tokenizer), tokenizer,
                           _stop_ids(tokenizer, model_config), served.max_concurrency)  # fmt: skip
        return cls(engine, info, served.max_concurrency, process, text_prompts=served.prompt == "text")

    @property
    def info(self) -> BackendInfo:
        """Label, the served model's identity, context limit, local tokenizer, stop ids."""
        return self._info

    def run(self, requests: Sequence[TrialRequest]) -> list[TrialOutput]:
        """Each request as one completion; several at once up to ``max_concurrency``, outputs in order."""
        if any(r.capture is not None for r in requests):
            raise ValueError("ServedBackend.run: attention capture is not available on a served engine")
        if len(requests) <= 1 or self.max_concurrency == 1:
            return [self._run_one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(self._run_one, requests))

    def suggest_batch_size(self, context_length: int, requests: int) -> int:
        """As many as may be in flight at once (the engine schedules its own memory)."""
        return max(1, min(self.max_concurrency, requests))

    def reset(self) -> None:
        """Nothing is kept between requests here (the engine's prefix cache is its own)."""

    def close(self) -> None:
        """Stop the server if this backend started it (``served.serve``); a user's own server is left running."""
        if self.process is not None:
            self.process.stop()
            self.process = None

    def _prompt(self, input_ids: tuple[int, ...]) -> Prompt:
        """The ids, or on the text route their text, once the engine is seen to tokenize it back to them."""
        if not self.text_prompts:
            return input_ids
        text = decode_exact(self._info.tokenizer, input_ids)
        remote = self.engine.tokenize(text, add_special=True)  # as the completion route tokenizes a text prompt
        if remote != list(input_ids):
            raise TrialFailed(f"text route: the engine tokenizes the prompt text to {len(remote)} ids, evalkit placed "
                              f"{len(input_ids)}, first difference at id {_first_difference(input_ids, remote)}")  # fmt: skip
        return text

    def _gold(self, request: TrialRequest, answer: Completion) -> tuple[float | None, float | None, dict[str, object]]:
        """Sum and mean of the gold tokens' log-probs (what the answer scored read off it), or Nones and the reason."""
        try:
            values = self.engine.gold_logprobs(request.input_ids, request.gold_ids, answer)
        except ServerError as exc:  # refused or unreadable: this engine cannot score the gold, say why
            return None, None, {"gold_logprob_reason": f"{self.engine.name}: no gold log-probs from the server: {exc}"}
        return sum(values), sum(values) / len(values), {}

    def _run_one(self, request: TrialRequest) -> TrialOutput:
        started = time.perf_counter()
        completion = self.engine.complete(self._prompt(request.input_ids), request.max_new_tokens,
                                          self._info.stop_token_ids)  # fmt: skip
        if completion.prompt_tokens is not None and completion.prompt_tokens != len(request.input_ids):
            raise TrialFailed(f"token mismatch: the server processed {completion.prompt_tokens} prompt tokens, "
                              f"evalkit sent {len(request.input_ids)}")  # fmt: skip
        tokenizer = self._info.tokenizer
        ids = completion.token_ids
        if ids is None:  # the openai route returns text only: its ids are the local tokens of that text
            ids = tuple(tokenizer.encode(completion.text, add_special_tokens=False))
        ids = _cut_at_stop(ids, self._info.stop_token_ids)
        gold_sum, gold_mean, extra = self._gold(request, completion)
        extra.update(served_prompt_tokens=completion.prompt_tokens, served_finish=completion.finish)
        return TrialOutput(
            generated_text=tokenizer.decode(list(ids), skip_special_tokens=True),
            generated_token_ids=ids, gold_token_ids=tuple(request.gold_ids),
            gold_logprob_sum=gold_sum, gold_logprob_mean=gold_mean,
            # greedy: the first answer token is the argmax after the prompt, exactly what the flag asks
            gold_first_token_is_argmax=bool(ids) and ids[0] == request.gold_ids[0],
            elapsed_s=time.perf_counter() - started, extra=extra,
        )


def _cut_at_stop(ids: Sequence[int], stops: Sequence[int]) -> tuple[int, ...]:
    """``ids`` up to and including the first stop id (the transformers backend's rule)."""
    out: list[int] = []
    for token_id in ids:
        out.append(int(token_id))
        if token_id in stops:
            break
    return tuple(out)

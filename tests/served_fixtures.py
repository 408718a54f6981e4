"""Shared by served-backend tests: a scriptable llama-server look-alike, and a fault-injecting proxy.

The look-alike speaks llama-server's /health, /props, /tokenize and /completion with a real tokenizer
and a fixed answer, so client and runner logic (retries, refusals, skips, resume) is tested without the
C++ binary; ``tests/models/served/test_llama_server.py`` runs the same paths against the real engine.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    """What the fake server does; tests change it while the server runs."""

    tokenizer: Any
    answer: str = " 12345"
    fail_next: list[int] = field(default_factory=list)  # HTTP codes to answer the next requests with
    fail_path: str = ""  # only requests to this path fail ("" for any)
    error_message: str = "injected"
    tokenize_offset: int = 0  # added to every id /tokenize returns (a disagreeing tokenizer)
    tokenize_offset_text_prompts: int = 0  # added only where add_special is asked (a text route's per-trial check)
    prompt_token_delta: int = 0  # added to tokens_evaluated (a server that saw another prompt)
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)  # (path, headers, body)
    delay_s: float = 0.0  # each /completion takes this long (so concurrent requests overlap)
    token_logprob: float | None = -0.25  # each forced gold token's log-prob (None: a server without n_probs)
    answer_logprob: float | None = -0.125  # each answer step's token log-prob (None: no probs on the answer)
    answer_top: dict[int, float] = field(default_factory=dict)  # other tokens' log-probs listed at every answer step
    bad_answers: list[dict] = field(default_factory=list)  # fields merged into the next answer replies (bad values)
    in_flight: int = 0
    max_in_flight: int = 0  # the most /completion requests seen at once
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(script: Script) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _reply(self, code: int, data: Any) -> None:
            body = json.dumps(data).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self, body: dict) -> None:
            script.requests.append((self.path, dict(self.headers), body))
            if script.fail_next and script.fail_path in ("", self.path):
                code = script.fail_next.pop(0)
                self._reply(code, {"error": {"code": code, "message": script.error_message}})
                return
            tok = script.tokenizer
            if self.path == "/health":
                self._reply(200, {"status": "ok"})
            elif self.path == "/props":
                self._reply(200, {"model_path": "/models/fake.gguf"})
            elif self.path == "/tokenize":
                ids = tok.encode(body["content"], add_special_tokens=False)
                offset = script.tokenize_offset + (script.tokenize_offset_text_prompts if body.get("add_special") else 0)
                self._reply(200, {"tokens": [i + offset for i in ids]})
            elif self.path == "/completion":
                with script.lock:
                    script.in_flight += 1
                    script.max_in_flight = max(script.max_in_flight, script.in_flight)
                time.sleep(script.delay_s)
                with script.lock:
                    script.in_flight -= 1
                ids = tok.encode(script.answer, add_special_tokens=False)[: body["n_predict"]]
                prompt = body["prompt"]  # ids, or a text prompt the server tokenizes
                prompt = tok.encode(prompt, add_special_tokens=False) if isinstance(prompt, str) else prompt
                reply = {"content": tok.decode(ids), "tokens": ids, "stop_type": "limit",
                         "tokens_evaluated": len(prompt) + script.prompt_token_delta}
                if "logit_bias" in body:  # a forced gold request: the biased token
                    forced = body["logit_bias"][0][0]
                    reply.update(tokens=[forced])
                    if body.get("n_probs") and script.token_logprob is not None:
                        reply.update(completion_probabilities=[{"id": forced, "logprob": script.token_logprob}])
                elif body.get("n_probs") and script.answer_logprob is not None:  # an answer with its steps' log-probs
                    top = [{"id": t, "logprob": v} for t, v in script.answer_top.items()]
                    reply.update(completion_probabilities=[{"id": t, "logprob": script.answer_logprob,
                                                            "top_logprobs": top} for t in ids])
                if "logit_bias" not in body and script.bad_answers:
                    with script.lock:
                        reply.update(script.bad_answers.pop(0) if script.bad_answers else {})
                self._reply(200, reply)
            else:
                self._reply(404, {"error": {"code": 404, "message": f"no route {self.path}"}})

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            self._route({})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length", 0))
            self._route(json.loads(self.rfile.read(length) or b"{}"))

    return Handler


class FakeServer:
    """A threaded fake llama-server on 127.0.0.1 and a free port; ``url`` to reach it, ``close()`` to stop."""

    def __init__(self, script: Script, port: int = 0) -> None:
        self.script = script
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(script))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class FaultProxy:
    """Forwards every request to ``target``, answering the first ``fail_next`` codes itself (fault injection)."""

    def __init__(self, target: str, fail_next: list[int] = (), on_request: Any = None) -> None:
        # on_request(path, n, body): called before forwarding the n-th request (a test kills its server there)
        self.target, self.fail_next, self.seen, self.on_request = target, list(fail_next), 0, on_request
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                proxy.seen += 1
                if proxy.on_request is not None:
                    proxy.on_request(self.path, proxy.seen, body)
                if proxy.fail_next:
                    code = proxy.fail_next.pop(0)
                    data = json.dumps({"error": {"code": code, "message": "injected by proxy"}}).encode()
                else:
                    code, data = _forward(proxy.target + self.path, self.command, body)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802
                self._forward(None)

            def do_POST(self) -> None:  # noqa: N802
                self._forward(self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _forward(url: str, method: str, body: bytes | None) -> tuple[int, bytes]:
    """The target's status and body; 502 when the target is down (as a real reverse proxy answers)."""
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, ConnectionError) as exc:
        return 502, json.dumps({"error": {"code": 502, "message": f"upstream down: {exc}"}}).encode()


def answer_requests(requests):
    """The bodies of the answer requests among a fake server's (the forced gold requests left out)."""
    return [body for path, _, body in requests if path == "/completion" and "logit_bias" not in body]


def forced_requests(requests):
    """The bodies of the forced gold log-prob requests among a fake server's."""
    return [body for path, _, body in requests if path == "/completion" and "logit_bias" in body]


def passkey_requests(tokenizer, model: str, lengths, depths, samples: int = 1, seed: int = 0,
                     max_new_tokens: int = 8):
    """The passkey grid's requests as evalkit builds them, each length's depths ascending (the runner's order)."""
    from pathlib import Path

    from evalkit.config.schema import EvalConfig
    from evalkit.models.base import TrialRequest
    from evalkit.prompt.builder import PromptBuilder
    from evalkit.prompt.controls import build_trial_prompt
    from evalkit.run.plan import expand
    from evalkit.run.preflight import prepare_tasks

    cfg = EvalConfig.model_validate({"models": [{"name": model}], "tasks": ["passkey"], "context_lengths": list(lengths),
                                     "depths": list(depths), "samples": samples, "seed": seed, "output_dir": "unused"})
    tasks = prepare_tasks(cfg, Path("passkey.yaml"))
    builder = PromptBuilder(tokenizer)
    requests = []
    trials = expand(cfg, {n: t.spec for n, t in tasks.items()})
    for trial in sorted(trials, key=lambda t: (t.sample, t.context_length, t.depth)):
        built = build_trial_prompt(builder, tasks[trial.task], trial, cfg.models[0], cfg)
        gold = builder.gold_continuation_ids(built.parts, built.needle.answer)
        requests.append(TrialRequest(tuple(built.prompt.input_ids), tuple(gold), max_new_tokens))
    return requests


def llama_server_binary():
    """The llama-server that tests/served_engine/build_llama_server.sh builds, or None where it is absent."""
    import os
    from pathlib import Path

    root = Path(os.environ.get("EVALKIT_LLAMA_SERVER_DIR", Path.home() / ".cache" / "evalkit-test" / "llama-server"))
    binary = root / "bin" / "llama-server"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """The real llama-server on 127.0.0.1 serving one GGUF: ``start()`` waits for /health, ``stop()`` ends it."""

    def __init__(self, binary, gguf, port: int, ctx_tokens: int = 2048, threads: int = 1, extra=()) -> None:
        self.binary, self.gguf, self.port, self.ctx_tokens = binary, gguf, port, ctx_tokens
        self.threads, self.extra = threads, list(extra)
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, wait_s: float = 120.0) -> LlamaServer:
        import subprocess
        import time

        # one slot and one thread: requests run in order and the shared CPU is not oversubscribed
        command = [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
                   "-c", str(self.ctx_tokens), "-np", "1", "-t", str(self.threads), "--no-webui", "--log-disable",
                   *self.extra]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}: {' '.join(command)}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama-server not healthy after {wait_s} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # a hard stop, as a crashed server stops
            self.process.wait(timeout=30)
        self.process = None


if __name__ == "__main__":  # a fake server as its own process (for served.serve): PORT TOKENIZER_DIR
    import sys

    from transformers import AutoTokenizer

    FakeServer(Script(AutoTokenizer.from_pretrained(sys.argv[2])), int(sys.argv[1])).thread.join()

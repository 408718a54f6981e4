"""Shared by served-backend tests: a scriptable llama-server look-alike, and a fault-injecting proxy.

The look-alike speaks llama-server's /health, /props, /tokenize and /completion with a real tokenizer
and a fixed answer, so client and runner logic (retries, refusals, skips, resume) is tested without the
C++ binary; ``tests/models/served/test_llama_server.py`` runs the same paths against the real engine.
"""

from __future__ import annotations

import json
import threading
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
    prompt_token_delta: int = 0  # added to tokens_evaluated (a server that saw another prompt)
    requests: list[tuple[str, dict, dict]] = field(default_factory=list)  # (path, headers, body)


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
                self._reply(200, {"tokens": [i + script.tokenize_offset for i in ids]})
            elif self.path == "/completion":
                ids = tok.encode(script.answer, add_special_tokens=False)[: body["n_predict"]]
                self._reply(200, {"content": tok.decode(ids), "tokens": ids, "stop_type": "limit",
                                  "tokens_evaluated": len(body["prompt"]) + script.prompt_token_delta})
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

    def __init__(self, script: Script) -> None:
        self.script = script
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(script))
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

    def __init__(self, target: str, fail_next: list[int]) -> None:
        self.target, self.fail_next, self.seen = target, list(fail_next), 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self, body: bytes | None) -> None:
                proxy.seen += 1
                if proxy.fail_next:
                    code = proxy.fail_next.pop(0)
                    data = json.dumps({"error": {"code": code, "message": "injected by proxy"}}).encode()
                else:
                    request = urllib.request.Request(proxy.target + self.path, data=body, method=self.command,
                                                     headers={"Content-Type": "application/json"})
                    with urllib.request.urlopen(request, timeout=120) as response:
                        code, data = response.status, response.read()
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

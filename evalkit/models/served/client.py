"""A small JSON-over-HTTP client for served engines: timeouts, retries with backoff, one-line errors.

Standard library only (``urllib``), so the served backend adds no dependency. What is retried and what
is not follows the issue: connection errors, timeouts and 5xx are transient (the server may be loading,
restarting or overloaded) and are retried with exponential backoff; a 4xx is the request's own fault
(unknown model, prompt longer than the context) and retrying cannot help, so it raises ``ServerError``
with the server's message, which stops the run. Retries used up raise ``TrialFailed``: the runner then
records that trial as skipped.

The API key is read from the environment variable the config names, at request time, and only ever
goes into the ``Authorization`` header: it is not kept in any field that reaches a record or a report.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evalkit.config.served import redact_url
from evalkit.errors import ServerError, TrialFailed

log = logging.getLogger(__name__)

__all__ = ["HttpClient", "ServerNotReady", "server_message"]

BACKOFF_FIRST_S = 0.5  # first wait after a transient failure; doubled per retry
BACKOFF_MAX_S = 8.0


def server_message(body: bytes) -> str:
    """The ``error.message`` of an OpenAI-style error body (llama-server and vLLM use it), else the text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300] or "(empty body)"
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:300]
    if isinstance(error, str):
        return error[:300]
    if isinstance(data, dict) and data.get("message"):  # vLLM's older shape
        return str(data["message"])[:300]
    return text[:300]


@dataclass
class HttpClient:
    """POST/GET JSON to one server; ``sleep`` is injectable so tests need not wait out the backoff."""

    base_url: str
    timeout_s: float = 120.0
    retries: int = 3
    api_key_env: str | None = None
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        """POST ``payload`` as JSON to ``path``; the decoded JSON reply (see the module doc for errors)."""
        return self._with_retries("POST", path, json.dumps(payload).encode("utf-8"))

    def get(self, path: str) -> Any:
        """GET ``path``; the decoded JSON reply."""
        return self._with_retries("GET", path, None)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ServerError(
                    f"served.api_key_env: the environment variable {self.api_key_env} is not set; export it "
                    "or remove api_key_env"
                )
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _with_retries(self, method: str, path: str, body: bytes | None) -> Any:
        url = self.base_url + path
        wait = BACKOFF_FIRST_S
        for attempt in range(self.retries + 1):
            try:
                return self._once(method, url, body)
            except _Transient as exc:
                line = self._redact(f"{method} {url}: {exc}")
                if attempt == self.retries:
                    failed = ServerNotReady if exc.answered else TrialFailed
                    raise failed(f"server error: {line} (after {self.retries} retries)") from None
                log.warning("%s; retry %d of %d in %.1f s", line, attempt + 1, self.retries, wait)
                self.sleep(wait)
                wait = min(wait * 2, BACKOFF_MAX_S)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _redact(self, text: str) -> str:
        """``text`` without the URL's ``user:password@`` (the config refuses one; a client built in code may not)."""
        text = text.replace(self.base_url, redact_url(self.base_url))
        userinfo = urllib.parse.urlsplit(self.base_url).netloc.rpartition("@")[0]
        return text.replace(userinfo, "***") if userinfo else text  # also where an exception quotes the host

    def _once(self, method: str, url: str, body: bytes | None) -> Any:
        request = urllib.request.Request(url, data=body, method=method, headers=self._headers())
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            message = server_message(exc.read())
            if exc.code >= 500:
                raise _Transient(f"HTTP {exc.code}: {message}", answered=True) from None
            raise ServerError(self._redact(f"{method} {url}: the server answered HTTP {exc.code}: {message}")) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, socket.timeout, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        if not raw.strip():  # SGLang's /health answers an empty 200
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Transient(f"reply is not JSON: {raw[:120]!r}", answered=True) from None


class ServerNotReady(TrialFailed):
    """Retries used up on a server that did answer (a 5xx, a reply that is not JSON): it listens, not ready yet."""


class _Transient(Exception):
    """A failure worth retrying (connection, timeout, 5xx, a cut-off reply); ``answered``: an HTTP reply came."""

    def __init__(self, message: str, answered: bool = False) -> None:
        super().__init__(message)
        self.answered = answered

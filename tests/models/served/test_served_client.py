"""HttpClient: transient failures retried with backoff, 4xx stops with the server's message, the key stays a header."""

from __future__ import annotations

import socket

import pytest

from evalkit.errors import ServerError, TrialFailed
from evalkit.models.served.client import HttpClient
from served_fixtures import FakeServer, Script


@pytest.fixture
def server(smollm2_tokenizer):
    fake = FakeServer(Script(smollm2_tokenizer))
    yield fake
    fake.close()


def test_503_is_retried_with_doubling_backoff(server):
    server.script.fail_next = [503, 503]
    waits: list[float] = []
    client = HttpClient(server.url, timeout_s=5, retries=3, sleep=waits.append)
    assert client.get("/health") == {"status": "ok"}
    assert waits == [0.5, 1.0]
    assert len(server.script.requests) == 3


def test_retries_used_up_raise_trial_failed(server):
    server.script.fail_next = [500, 502, 503]
    client = HttpClient(server.url, timeout_s=5, retries=2, sleep=lambda s: None)
    with pytest.raises(TrialFailed, match="HTTP 503: injected .after 2 retries"):
        client.get("/health")


def test_4xx_stops_at_once_naming_the_server_message(server):
    server.script.fail_next = [400]
    server.script.error_message = "the request exceeds the available context size"
    client = HttpClient(server.url, timeout_s=5, retries=3, sleep=lambda s: pytest.fail("4xx must not be retried"))
    with pytest.raises(ServerError) as err:
        client.post("/completion", {"prompt": [1]})
    assert "HTTP 400: the request exceeds the available context size" in str(err.value)
    assert "\n" not in str(err.value)


def test_connection_refused_is_transient():
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = HttpClient(f"http://127.0.0.1:{port}", timeout_s=2, retries=1, sleep=lambda s: None)
    with pytest.raises(TrialFailed, match="after 1 retries"):
        client.get("/health")


def test_api_key_goes_in_the_header_only(server, monkeypatch):
    monkeypatch.setenv("EVALKIT_TEST_KEY", "sk-secret-123")
    client = HttpClient(server.url, api_key_env="EVALKIT_TEST_KEY")
    client.get("/health")
    headers = server.script.requests[-1][1]
    assert headers["Authorization"] == "Bearer sk-secret-123"
    assert "sk-secret-123" not in repr(client)


def test_missing_key_variable_is_one_line(server, monkeypatch):
    monkeypatch.delenv("EVALKIT_NO_SUCH_KEY", raising=False)
    with pytest.raises(ServerError, match="served.api_key_env: the environment variable EVALKIT_NO_SUCH_KEY is not set"):
        HttpClient(server.url, api_key_env="EVALKIT_NO_SUCH_KEY").get("/health")


def test_a_url_password_is_never_printed(server, caplog):
    """A client built in code with ``user:password@`` (the config refuses one) redacts it in logs and errors."""
    url = server.url.replace("http://", "http://user:S3CRETPW@")
    server.script.fail_next = [400]
    client = HttpClient(url, timeout_s=5, retries=1, sleep=lambda s: None)
    with pytest.raises((ServerError, TrialFailed)) as first:  # urllib takes the userinfo as part of the host
        client.post("/completion", {"prompt": [1]})
    with pytest.raises((ServerError, TrialFailed)) as second:
        client.get("/health")
    shown = [str(first.value), str(second.value), *(r.getMessage() for r in caplog.records)]
    assert len(shown) >= 3 and "/health" in shown[1]
    assert not any("S3CRETPW" in line or "user:" in line for line in shown), shown

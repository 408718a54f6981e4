"""The ``served:`` block of a model entry (``backend: served``): where the engine listens and how to talk to it."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalkit.config.validation_errors import show_value

__all__ = ["SERVED_HASH_EXCLUDED_FIELDS", "ServedConfig", "redact_url"]

# where a served model runs and how the client behaves: engine, served name and tokenizer stay in the hash
SERVED_HASH_EXCLUDED_FIELDS = frozenset(
    # ``prompt``: the text route checks every trial's ids against the local ones, so results are the same
    {"base_url", "api_key_env", "max_concurrency", "timeout_s", "retries", "serve", "serve_wait_s", "prompt"}
)


# the authority's ``user:password@`` part (greedy: a password may hold an unescaped "@")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?[^/?#]*@")
HTTP_URL = re.compile(r"^https?://[^/\s]+")


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``: the form every message prints."""
    return _USERINFO.sub(r"\1***@", url)


class ServedConfig(BaseModel):
    """``served:`` of a model entry with ``backend: served``: where the engine listens and how to talk to it.

    The key itself is never in the config: ``api_key_env`` names the environment variable holding it.
    Where the run goes (URL, key, concurrency, timeouts) does not define results: left out of ``config_hash``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    base_url: str = Field(min_length=1, description="engine address, e.g. http://127.0.0.1:8080 (no /v1)",
                          json_schema_extra={"pattern": HTTP_URL.pattern, "not": {"pattern": _USERINFO.pattern}})
    engine: Literal["llama_cpp", "openai", "sglang"] = Field(
        "llama_cpp",
        description="llama_cpp: llama-server /completion + /tokenize; openai: /v1/completions; sglang: /generate",
    )
    prompt: Literal["token_ids", "text"] = Field(
        "token_ids", description="token_ids: send the ids; text: send the decoded text, checked per trial by /tokenize"
    )
    model: str | None = Field(None, description="the served model name (openai `model` field); None: the engine's")
    tokenizer: str | None = Field(None, description="tokenizer for placement (alias, Hub id, folder); None: `name`")
    api_key_env: str | None = Field(None, description="environment variable holding the API key (never recorded)")
    max_concurrency: int = Field(4, ge=1, le=256)
    timeout_s: float = Field(120.0, gt=0)
    retries: int = Field(3, ge=0, le=20, description="retries after a connection error, timeout or 5xx")
    serve: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="command (argv list) that starts the server; stopped at the end"
    )
    serve_wait_s: float = Field(300.0, gt=0, description="how long a started server may take to answer /health")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        shown = show_value(redact_url(value))  # a password is never echoed, even in a refusal
        if not HTTP_URL.match(value):
            raise ValueError(f"{shown} is not an http(s) URL; write e.g. http://127.0.0.1:8080")
        if _USERINFO.match(value):
            raise ValueError(f"{shown} holds a user name or password; credentials never go in the URL (they would "
                             "reach logs and the run header): put the key in an environment variable and name it "
                             "in served.api_key_env")
        return value.rstrip("/")

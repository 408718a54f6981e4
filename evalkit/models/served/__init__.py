"""The served backend: a model behind an HTTP engine (llama.cpp ``llama-server``, vLLM, any OpenAI server).

``client.py`` (HTTP, retries, errors) -> ``engines.py`` (per-engine routes) -> ``backend.py`` (the Backend).
"""

from evalkit.models.served.backend import ServedBackend

__all__ = ["ServedBackend"]

"""The backend registry: the ``backend:`` name of a model entry -> the class that runs it.

Explicit, like every evalkit registry: an unknown name is refused with the known ones listed. Lookups
take the mapping as an argument (default ``BACKENDS``), so a test can offer its own backend classes
without changing module state.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from evalkit.errors import ConfigError
from evalkit.models.base import Backend
from evalkit.models.served.backend import ServedBackend
from evalkit.models.transformers_backend import TransformersBackend

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "backend_class"]

DEFAULT_BACKEND = "transformers"  # the default of ``ModelConfig.backend``
BACKENDS: Mapping[str, type[Backend]] = MappingProxyType(
    {TransformersBackend.name: TransformersBackend, ServedBackend.name: ServedBackend}
)


def backend_class(name: str, known: Mapping[str, type[Backend]] | None = None) -> type[Backend]:
    """The class registered as ``name`` in ``known`` (default ``BACKENDS``); ConfigError listing the known ones."""
    known = BACKENDS if known is None else known
    if name not in known:
        raise ConfigError(f"backend {name!r} is not known; use one of: {', '.join(sorted(known))}")
    return known[name]

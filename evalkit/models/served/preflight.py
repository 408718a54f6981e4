"""What ``validate`` and ``run`` check of a ``served:`` block before anything is written, without sending a prompt.

    api_key_env  the variable is set (named, its value never printed)
    serve        its program exists and is executable (looked up on PATH as the launcher's ``Popen`` does)
    base_url     without ``serve``, the engine's health route answers within ``HEALTH_TIMEOUT_S`` (a server that
                 answers but is still loading, a 5xx, passes: ``run`` waits for it with its retries)

Each refusal is one line naming the config file, the entry and the field.
"""

from __future__ import annotations

import logging
import os
import shutil

from evalkit.config.schema import ModelConfig
from evalkit.config.served import ServedConfig, redact_url
from evalkit.errors import ConfigError, ServerError, TrialFailed
from evalkit.models.served.backend import make_engine
from evalkit.models.served.client import ServerNotReady

log = logging.getLogger(__name__)

__all__ = ["HEALTH_TIMEOUT_S", "check_served"]

HEALTH_TIMEOUT_S = 3.0  # a live engine answers its health route at once; a closed port fails faster still


def check_served(cfg: ModelConfig, where: str) -> None:
    """ConfigError or ServerError (one line) where ``cfg.served`` cannot work; ``where`` is ``FILE: models[i]``."""
    served = cfg.served
    if served is None:
        return
    where = f"{where}.served"
    _check_key(served, where)
    if served.serve:
        _check_program(served.serve[0], where)
    else:
        _check_health(cfg, where)


def _check_key(served: ServedConfig, where: str) -> None:
    name = served.api_key_env
    if name and not os.environ.get(name):
        raise ConfigError(f"{where}.api_key_env: the environment variable {name} is not set (or empty); export it "
                          "with the server's key, or remove api_key_env for a server without one")


def _check_program(program: str, where: str) -> None:
    """The program resolves as ``Popen`` resolves it: a path as given, a bare name on PATH."""
    if os.sep in program or (os.altsep and os.altsep in program):
        found = program if os.path.isfile(program) and os.access(program, os.X_OK) else None
        what = "is not an executable file"
    else:
        found = shutil.which(program)
        what = "is not an executable found on PATH"
    if found is None:
        raise ConfigError(f"{where}.serve[0]: {program!r} {what}; install the engine, give its full path, or remove "
                          "serve to use a server you start yourself")


def _check_health(cfg: ModelConfig, where: str) -> None:
    served = cfg.served
    assert served is not None  # checked by the caller
    engine = make_engine(cfg, retries=0, timeout_s=HEALTH_TIMEOUT_S)
    try:
        engine.health()
    except ServerNotReady as exc:  # it listens: run's own retries wait for it to finish loading
        log.warning("%s.base_url: the server answers but is not ready: %s", where, exc.reason)
    except TrialFailed as exc:
        raise ServerError(f"{where}.base_url: no {engine.name} server answers at {redact_url(served.base_url)} "
                          f"within {HEALTH_TIMEOUT_S:g} s ({exc.reason}); start the server, fix the address, or set "
                          "served.serve to have evalkit start it") from None
    except ServerError as exc:  # a 4xx: a wrong key, or another engine's routes
        raise ServerError(f"{where}.base_url: {exc}; check served.engine and served.api_key_env") from None

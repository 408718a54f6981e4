"""``served.serve``: start the engine for the user, wait until it answers, stop it at the end.

The command is an argv list (no shell), e.g. ``[llama-server, -m, model.gguf, --port, "8080"]`` or
``[vllm, serve, org/model, --port, "8000"]``; ``base_url`` says where it will listen. Its output goes to
a log file beside nothing evalkit records (a temporary file, named in any error). The process runs in its
own session so that a Ctrl-C reaches evalkit first, which then stops it (``ServedBackend.close``).
"""

from __future__ import annotations

import logging
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from evalkit.errors import ServerError, TrialFailed

log = logging.getLogger(__name__)

__all__ = ["ServerProcess"]

POLL_S = 0.5


class ServerProcess:
    """One launched engine process; ``stop()`` is safe to call twice."""

    def __init__(self, command: Sequence[str]) -> None:
        """Start ``command`` (argv list); its stdout and stderr go to ``log_path``."""
        self.command = list(command)
        handle = tempfile.NamedTemporaryFile(prefix="evalkit-serve-", suffix=".log", delete=False)
        self.log_path = Path(handle.name)
        try:
            self.process = subprocess.Popen(self.command, stdout=handle, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        except OSError as exc:
            raise ServerError(f"served.serve: cannot start {self.command[0]!r}: {exc}; check the command") from None
        finally:
            handle.close()
        log.info("started %s (pid %d), log %s", " ".join(self.command), self.process.pid, self.log_path)

    def wait_healthy(self, health: Callable[[], None], wait_s: float) -> None:
        """Poll ``health()`` until it passes; ServerError if the process exits or ``wait_s`` runs out."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.process.poll() is not None:
                raise ServerError(f"served.serve: the server exited with code {self.process.returncode} before it "
                                  f"was ready; see {self.log_path}")  # fmt: skip
            try:
                health()
                return
            except TrialFailed:
                if time.monotonic() > deadline:
                    raise ServerError(f"served.serve_wait_s: the server was not ready after {wait_s:g} s; raise "
                                      f"serve_wait_s or see {self.log_path}") from None  # fmt: skip
            time.sleep(POLL_S)

    def stop(self, grace_s: float = 10.0) -> None:
        """Terminate the process (kill it after ``grace_s``) and wait for it."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        log.info("stopped %s (pid %d)", self.command[0], self.process.pid)

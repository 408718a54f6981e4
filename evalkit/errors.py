"""Exception types, one per category. The CLI prints them in one or two lines, no traceback."""

from __future__ import annotations


class EvalkitError(Exception):
    """Base of every error evalkit raises on purpose (bad input, missing package, ...)."""

    exit_code = 2


class ConfigError(EvalkitError):
    """An eval config is invalid. Message: ``file: field: what is wrong; how to fix``."""


class TaskError(EvalkitError):
    """A task definition (``tasks/*.yaml``) is invalid or unknown.

    ``task_field`` names the task file's field at fault when the error is found later than the file's
    validation (``documents.total`` for a source too small for it), so the caller can say where to fix it.
    """

    def __init__(self, message: str, task_field: str | None = None) -> None:
        super().__init__(message)
        self.task_field = task_field


class HaystackError(EvalkitError):
    """A haystack source cannot supply the text asked of it."""


class PlacementError(EvalkitError):
    """A prompt cannot be built as requested (needle longer than the context, ...)."""


class ModelLoadError(EvalkitError):
    """A model or tokenizer cannot be found, installed or loaded."""


class CaptureError(EvalkitError):
    """Attention capture is not possible for this model family or kernel."""


class RunDirError(EvalkitError):
    """The run directory is held by another run or belongs to a different config."""


class ExportError(EvalkitError):
    """A run cannot be exported (``evalkit export``): an unknown format, a library the format needs is missing."""


class FieldError(ValueError):
    """Raised inside a pydantic model validator about one field (e.g. a missing key).

    Pydantic locates whole-model errors at the top level; the one-line error names ``field`` instead. Inside a
    list field's own validator, ``field`` may be an entry's index (``context_lengths[1]``).
    """

    def __init__(self, field: str | int, message: str) -> None:
        super().__init__(message)
        self.field = field


class ServerError(EvalkitError):
    """A served engine refused a request (4xx: bad model name, context too long, ...): the run stops."""


class TrialFailed(Exception):
    """One trial could not be run for a reason outside the config (a server still down after its retries).

    Not an ``EvalkitError``: the runner records the trial as skipped with ``reason`` and goes on;
    ``--retry-skipped`` redoes it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

"""Weights stored as Python pickles: refused unless the entry opts in, and a refused pickle said in one line.

Loading a pickle can run code. Without ``allow_pickle_weights: true`` a folder whose only weights are pickles
is refused before anything loads. With it, transformers still reads them through torch's ``weights_only``
unpickler, which refuses anything but tensors and plain containers without running it; that refusal (a
``__reduce__`` payload, a file that is no weights pickle at all) becomes ``pickle_load_error``'s one line.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from evalkit.config.schema import ModelConfig
from evalkit.errors import ModelLoadError

__all__ = ["PICKLE_LOAD_ERRORS", "PICKLE_SUFFIXES", "pickle_files", "pickle_load_error", "quiet_unpickler",
           "refuse_pickle_weights", "refused_by_unpickler"]

# weight files that are Python pickles (loading one can run code); safetensors files are plain data
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# what torch's weights_only loader raises for a pickle it will not (or cannot) read: refused or cut short
PICKLE_LOAD_ERRORS = (pickle.UnpicklingError, EOFError)


def pickle_files(folder: Path) -> list[str]:
    """Names of the pickle weight files directly in ``folder`` (sorted); [] for a file or a missing folder."""
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())


def refuse_pickle_weights(cfg: ModelConfig, folder: Path) -> None:
    """A local folder whose weights exist only as pickles is refused unless the entry opts in."""
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = pickle_files(folder)
    if pickles:
        raise ModelLoadError(
            f"model {cfg.name!r}: the weights are Python pickles ({', '.join(pickles[:3])}), which can run code "
            "when loaded, and there is no .safetensors file; convert them (save_pretrained writes safetensors) "
            "or, if you trust the files, set allow_pickle_weights: true in the model entry"
        )


@contextlib.contextmanager
def quiet_unpickler() -> Iterator[None]:
    """Silence torch's warning about a pickle protocol it does not expect: the refusal, if any, says it in one line."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
        yield


def refused_by_unpickler(exc: BaseException) -> bool:
    """Did torch's ``weights_only`` unpickler refuse the file (or fail inside it, on bytes that are no pickle)?"""
    if isinstance(exc, PICKLE_LOAD_ERRORS):
        return True
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_globals.get("__name__") == "torch._weights_only_unpickler":
            return True
        tb = tb.tb_next
    return False


# torch's paragraphs around its reason: the weights_only history, where to file an issue, the docs link
_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _unpickler_reason(exc: BaseException) -> str:
    """torch's own reason (``unsupported GLOBAL posix.system``), not its paragraphs about weights_only."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(_BOILERPLATE)]
    reason = reasons[0] if reasons else "the file ends early" if isinstance(exc, EOFError) else "no reason given"
    return f"{type(exc).__name__}: {reason[:200]}"


def pickle_load_error(cfg: ModelConfig, location: str, exc: BaseException) -> ModelLoadError:
    """One line for a pickle that torch's safe loader refused: which entry, which file, why; nothing of it ran."""
    files = pickle_files(Path(location))
    which = ", ".join(files[:3]) if files else "its pickled weights"
    return ModelLoadError(
        f"model {cfg.name!r}: {which} in {location!r} was refused as unsafe or invalid ({_unpickler_reason(exc)}): "
        "torch's weights_only loader reads tensors only and ran nothing of it; allow_pickle_weights cannot load "
        "such a file: use safetensors weights from a source you trust"
    )

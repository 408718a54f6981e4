"""Content hashes of local model files: the revision a local folder or GGUF file records.

A local folder has no commit hash, so its revision is ``local-sha256:<12 hex>`` over the names, sizes and
contents of the files that define the model (config, weights, tokenizer); edit one weight byte and the
revision, hence every trial id, changes. Hashing a multi-GB folder takes seconds, so a file's digest is kept
in ``<cache>/digests.json`` keyed by its absolute path, size and modification time (a changed file is
hashed again).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

DIGEST_CACHE_FILE = "digests.json"
# what defines a model in a save_pretrained folder; README, images or logs beside it do not change the revision
_DEFINING_SUFFIXES = (".json", ".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".model", ".tiktoken", ".gguf")
_DEFINING_NAMES = ("merges.txt", "vocab.txt")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file (about 0.07 s for the 98 MB SmolLM2 GGUF)."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _key(path: Path) -> str:
    stat = path.stat()
    return f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"


def _read_cache(cache_file: Path) -> dict[str, str]:
    try:
        data = json.loads(cache_file.read_text())
    except (OSError, ValueError):  # none yet, or damaged: hash again
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache_file: Path, entries: dict[str, str]) -> None:
    """Replace the cache file atomically (a concurrent reader sees the old or the new one); best effort.

    Entries of files that no longer exist are dropped, so temporary folders do not pile up in it.
    """
    entries = {key: digest for key, digest in entries.items() if Path(key.rsplit("|", 2)[0]).exists()}
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix=f".{cache_file.name}.", dir=cache_file.parent)
        with os.fdopen(handle, "w") as out:
            json.dump(entries, out, indent=0, sort_keys=True)
        os.replace(temp, cache_file)
    except OSError:
        pass  # a read-only cache only costs a rehash next time


def cached_sha256(paths: list[Path], cache_dir: Path) -> list[str]:
    """sha256 of each file, reusing digests kept in ``cache_dir`` for an unchanged path, size and mtime."""
    cache_file = cache_dir / DIGEST_CACHE_FILE
    entries = _read_cache(cache_file)
    digests, changed = [], False
    for path in paths:
        key = _key(path)
        if key not in entries:
            entries[key] = file_sha256(path)
            changed = True
        digests.append(entries[key])
    if changed:
        _write_cache(cache_file, entries)
    return digests


def defining_files(folder: Path) -> list[Path]:
    """The files of a model folder that enter its content hash, sorted by name (subfolders are not read)."""
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
         and (p.suffix in _DEFINING_SUFFIXES or p.name in _DEFINING_NAMES)),  # fmt: skip
        key=lambda p: p.name,
    )


def folder_revision(folder: Path, cache_dir: Path) -> str:
    """``local-sha256:<12 hex>`` over (name, size, sha256) of the folder's defining files."""
    files = defining_files(folder)
    digests = cached_sha256(files, cache_dir)
    listing = [[p.name, p.stat().st_size, digest] for p, digest in zip(files, digests)]
    text = json.dumps(listing, separators=(",", ":"))
    return f"local-sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}"

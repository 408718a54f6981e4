"""Content hashes of local model folders (evalkit/models/content_hash.py) and the revision a local folder records."""

from __future__ import annotations

import os
import shutil

import pytest

from evalkit.config.schema import ModelConfig
from evalkit.models import content_hash, describe_model
from evalkit.models.content_hash import DIGEST_CACHE_FILE, cached_sha256, folder_revision


@pytest.fixture()
def folder(tmp_path, tiny_model_dir):
    copy = tmp_path / "my-model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def _flip_one_byte(path) -> None:
    """Change one byte in the middle, size unchanged, and move the mtime on (as any real edit would)."""
    stat = path.stat()
    with path.open("r+b") as handle:
        handle.seek(stat.st_size // 2)
        byte = handle.read(1)
        handle.seek(stat.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_a_changed_weight_byte_changes_the_revision(folder, tmp_path) -> None:
    cache = tmp_path / "cache"
    before = folder_revision(folder, cache)
    assert before.startswith("local-sha256:") and len(before) == len("local-sha256:") + 12
    assert folder_revision(folder, cache) == before
    _flip_one_byte(folder / "model.safetensors")
    assert folder_revision(folder, cache) != before


def test_files_that_do_not_define_the_model_leave_the_revision(folder, tmp_path) -> None:
    cache = tmp_path / "cache"
    before = folder_revision(folder, cache)
    (folder / "README.md").write_text("notes")
    (folder / ".DS_Store").write_bytes(b"x")
    assert folder_revision(folder, cache) == before
    (folder / "config.json").write_text((folder / "config.json").read_text().replace("}", ', "extra": 1}', 1))
    assert folder_revision(folder, cache) != before


def test_an_unchanged_file_is_not_hashed_again(folder, tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    before = folder_revision(folder, cache)
    assert (cache / DIGEST_CACHE_FILE).is_file()
    monkeypatch.setattr(content_hash, "file_sha256", lambda path: pytest.fail(f"rehashed {path.name}"))
    assert folder_revision(folder, cache) == before


def test_a_damaged_digest_cache_is_rebuilt(folder, tmp_path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / DIGEST_CACHE_FILE).write_text("{not json")
    weights = folder / "model.safetensors"
    assert cached_sha256([weights], cache) == [content_hash.file_sha256(weights)]


def test_a_local_folder_records_its_content_hash(folder, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    info = describe_model(ModelConfig(name=str(folder), device="cpu"))
    assert info.revision == folder_revision(folder, tmp_path / "cache")

"""Any GGUF file as a model name (evalkit/models/hf.py, builtin.py ``ensure_gguf``): converted once, keyed by content.

One tiny Llama GGUF (tests/gguf_fixtures.py) is really converted per session (about 25 s, mostly the tokenizer);
the other tests reuse that cache or replace the converter.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import smollm2_gguf_path, write_config
from gguf_fixtures import write_tiny_gguf

from evalkit.cli import main
from evalkit.config.schema import ModelConfig
from evalkit.errors import ModelLoadError
from evalkit.models import builtin, describe_model, load_model, run_prompt
from evalkit.models.builtin import MARKER_FILE, ensure_gguf
from evalkit.models.content_hash import file_sha256
from evalkit.models.gguf_check import gguf_problem


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
def gguf_cache(tmp_path_factory, tiny_gguf):
    """(cache folder, loaded model): the tiny GGUF loaded once by path, which converts it."""
    cache = tmp_path_factory.mktemp("evalkit-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALKIT_CACHE", str(cache))
        loaded = load_model(ModelConfig(name=str(tiny_gguf), device="cpu", dtype="float32"))
    return cache, loaded


def _no_conversion(monkeypatch) -> None:
    monkeypatch.setattr(builtin, "convert_gguf", lambda *a: pytest.fail("converted again"))


def test_a_gguf_path_loads_with_its_content_hash_as_revision(gguf_cache, tiny_gguf) -> None:
    cache, loaded = gguf_cache
    digest = file_sha256(tiny_gguf)
    assert loaded.revision == f"gguf-sha256:{digest[:12]}"
    folder = cache / "models" / f"gguf-{digest[:12]}"
    assert (folder / MARKER_FILE).is_file() and (folder / "model.safetensors").is_file()
    assert loaded.max_context_tokens == 512
    out = run_prompt(loaded, loaded.tokenizer("The pass key is")["input_ids"], [5], 3, ())
    assert len(out.generated_token_ids) == 3


def test_the_same_file_twice_uses_one_cache_folder(gguf_cache, tiny_gguf, tmp_path, monkeypatch) -> None:
    cache, loaded = gguf_cache
    _no_conversion(monkeypatch)
    copy = shutil.copy(tiny_gguf, tmp_path / "renamed.gguf")
    first, second = ensure_gguf(tiny_gguf, cache), ensure_gguf(Path(copy), cache)
    assert first.path == second.path and second.revision == loaded.revision
    assert len([p for p in (cache / "models").iterdir() if p.name.startswith("gguf-")]) == 1


def test_gguf_file_in_a_folder_is_the_same_model(gguf_cache, tiny_gguf, monkeypatch) -> None:
    cache, loaded = gguf_cache
    monkeypatch.setenv("EVALKIT_CACHE", str(cache))
    _no_conversion(monkeypatch)
    info = describe_model(ModelConfig(name=str(tiny_gguf.parent), gguf_file=tiny_gguf.name))
    assert info.revision == loaded.revision and info.max_context_tokens == 512


def test_a_changed_weight_byte_is_another_model(tiny_gguf, tmp_path, monkeypatch) -> None:
    converted: list[Path] = []
    monkeypatch.setattr(builtin, "convert_gguf", lambda gguf, out: converted.append(gguf))
    changed = Path(shutil.copy(tiny_gguf, tmp_path / "changed.gguf"))
    data = bytearray(changed.read_bytes())
    data[-10] ^= 0xFF  # inside the last tensor
    changed.write_bytes(bytes(data))
    a, b = ensure_gguf(tiny_gguf, tmp_path / "cache"), ensure_gguf(changed, tmp_path / "cache")
    assert a.path != b.path and a.revision != b.revision and converted == [tiny_gguf, changed]


def test_a_missing_gguf_path_is_a_one_line_error(tmp_path, capsys) -> None:
    missing = tmp_path / "nowhere" / "model.gguf"
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(name=str(missing)))
    assert str(info.value) == (
        f"model {str(missing)!r}: no such GGUF file (a relative path starts where evalkit runs); fix the path"
    )
    path = write_config(tmp_path / "cfg.yaml", models=[str(missing)], tasks=["passkey"], context_lengths=[128],
                        depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))  # fmt: skip
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "models[0].name" in err and "no such GGUF file" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _first_megabyte(path: Path) -> None:
    with open(smollm2_gguf_path(), "rb") as handle:
        path.write_bytes(handle.read(1 << 20))


def _cut_tensor_data(path: Path) -> None:
    data = smollm2_gguf_path().read_bytes()
    path.write_bytes(data[: len(data) * 9 // 10])


@pytest.mark.parametrize("write, reason", [
    (_first_megabyte, "metadata 'tokenizer.ggml.merges' needs 7 bytes at byte 1,048,575"),  # was struct.error
    (lambda p: p.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 24), "metadata key 0 needs"),  # was OverflowError
    (_cut_tensor_data, "truncated: its tensor data ends at byte"),
    (lambda p: p.write_bytes(b"GGUF\x09\x00\x00\x00" + bytes(16)), "GGUF version 9 is not supported"),
    (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)), "does not start with the GGUF magic bytes"),
    (lambda p: p.write_bytes(b"GGUF"), "too short to be a GGUF file"),
], ids=["first MB", "lengths all ones", "tensor data cut", "version 9", "zip", "four bytes"])
def test_a_truncated_or_malformed_gguf_is_one_line_naming_the_file(write, reason, tmp_path, monkeypatch,
                                                                   capsys) -> None:
    bad = tmp_path / "bad.gguf"
    write(bad)
    monkeypatch.setenv("EVALKIT_CACHE", str(tmp_path / "cache"))
    path = write_config(tmp_path / "cfg.yaml", models=[str(bad)], tasks=["passkey"], context_lengths=[128],
                        depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))  # fmt: skip
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"models[0].name: GGUF model {str(bad)!r}: not a complete GGUF file" in err and reason in err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_the_embedded_gguf_passes_the_structure_check() -> None:
    assert gguf_problem(smollm2_gguf_path()) is None


def test_a_gguf_file_not_in_the_folder_lists_the_ones_there(tiny_gguf) -> None:
    with pytest.raises(ModelLoadError, match=r"gguf_file 'other.gguf' is not in that folder \(it holds tiny-llama"):
        describe_model(ModelConfig(name=str(tiny_gguf.parent), gguf_file="other.gguf"))


def test_gguf_file_on_a_builtin_is_refused() -> None:
    with pytest.raises(ModelLoadError, match="'gguf_file' does not apply"):
        describe_model(ModelConfig(name="smollm2-135m-instruct", gguf_file="x.gguf"))

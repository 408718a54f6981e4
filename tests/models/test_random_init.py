"""The untrained control (evalkit/models/random_init.py): a model entry's architecture with seeded random weights."""

from __future__ import annotations

import shutil

import pytest
import torch

from evalkit.config.schema import ModelConfig
from evalkit.models import describe_model, load_model


def _random(model_dir, **fields) -> ModelConfig:
    return ModelConfig(name=str(model_dir), device="cpu", dtype="float32", init="random", **fields)


def _same_weights(a, b) -> bool:
    first, second = a.model.state_dict(), b.model.state_dict()
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_one_seed_gives_identical_weights_and_another_seed_different_ones(tiny_model_dir, single_thread):
    before = torch.random.get_rng_state()
    first, again = load_model(_random(tiny_model_dir)), load_model(_random(tiny_model_dir))
    assert torch.equal(torch.random.get_rng_state(), before)  # the run's own random state is left as it was
    other = load_model(_random(tiny_model_dir, init_seed=1))
    trained = load_model(ModelConfig(name=str(tiny_model_dir), device="cpu", dtype="float32"))
    assert _same_weights(first, again)
    assert not _same_weights(first, other)
    # the folder's weights were not read (the fixture saved the family's init under seed 0: compare seed 1)
    assert not _same_weights(other, trained)
    # the same architecture and tokenizer, named by its label, at the folder's revision, ready to run
    assert first.model.config.num_hidden_layers == trained.model.config.num_hidden_layers == 2
    assert first.tokenizer.get_vocab() == trained.tokenizer.get_vocab()
    assert first.name == f"{tiny_model_dir} (random init, seed 0)" and trained.name == str(tiny_model_dir)
    assert first.revision == trained.revision == describe_model(_random(tiny_model_dir)).revision
    assert not first.model.training and first.dtype == "float32"


def test_random_weights_load_in_the_entry_dtype_and_kernel(tiny_model_dir, single_thread):
    loaded = load_model(_random(tiny_model_dir).model_copy(update={"dtype": "bfloat16",
                                                                    "attn_implementation": "eager"}))
    assert loaded.dtype == "bfloat16" and loaded.model.config._attn_implementation == "eager"


def test_a_device_map_strategy_places_the_same_weights(tiny_model_dir, single_thread):
    spread = load_model(_random(tiny_model_dir, device_map="auto"))
    assert getattr(spread.model, "hf_device_map", None)  # placed by accelerate's dispatch
    assert _same_weights(spread, load_model(_random(tiny_model_dir)))


def test_a_pickle_only_folder_builds_its_control_without_reading_the_pickles(tiny_model_dir, tmp_path, single_thread):
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, folder)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    with pytest.raises(Exception, match="allow_pickle_weights"):
        describe_model(ModelConfig(name=str(folder), device="cpu"))
    assert load_model(_random(folder)).model.config.num_hidden_layers == 2

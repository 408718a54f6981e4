"""Built-in model registry (evalkit/models/registry.py): the listing and the defaults a base model implies."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from conftest import write_config
from run_fixtures import records

from evalkit.cli import main
from evalkit.config.schema import EvalConfig, config_hash, load_config
from evalkit.errors import ConfigError
from evalkit.models import BuiltinModel, CachedBuiltin, list_builtin_models, registry
from evalkit.models.registry import resolve_model_defaults
from evalkit.run.runner import run_eval
from evalkit.store.format import read_header

REPO = Path(__file__).resolve().parents[2]
GEMMA = "gemma3-270m"


def _config(*models: object) -> EvalConfig:
    return EvalConfig.model_validate(dict(models=list(models), tasks=["passkey"], context_lengths=[128], depths=[0.5],
                                          samples=1, output_dir="run"))  # fmt: skip


def test_list_shows_both_builtins_and_gemma_says_base_model_and_licence() -> None:
    listing = list_builtin_models()
    assert list(listing) == [GEMMA, "smollm2-135m-instruct"]
    assert "base model" in listing[GEMMA] and "Gemma Terms of Use" in listing[GEMMA]
    assert "base model" not in listing["smollm2-135m-instruct"]
    assert all("\n" not in line for line in listing.values())


def test_list_command_prints_gemma(capsys) -> None:
    assert main(["list", "models"]) == 0
    line = next(row for row in capsys.readouterr().out.splitlines() if GEMMA in row)
    assert "base model" in line and "gemma" in line.lower()


def test_a_base_model_entry_without_chat_template_gets_plain_prompts() -> None:
    resolved = resolve_model_defaults(_config(GEMMA, "smollm2-135m-instruct", {"name": "org/other"}))
    assert [m.chat_template for m in resolved.models] == [False, True, True]
    assert resolve_model_defaults(resolved) == resolved  # resolving twice changes nothing
    # the hash describes what runs: an omitted chat_template hashes as the explicit false it resolves to
    explicit = _config({"name": GEMMA, "chat_template": False}, "smollm2-135m-instruct", {"name": "org/other"})
    assert config_hash(resolved) == config_hash(resolve_model_defaults(explicit))


def test_existing_configs_keep_their_hash() -> None:
    quick = load_config(REPO / "configs" / "quickstart.yaml")
    resolved = resolve_model_defaults(quick)
    assert config_hash(resolved) == config_hash(quick) == "b0b8332f6d02b9e5"
    assert resolved.source_path == quick.source_path


def test_explicit_chat_template_true_on_a_base_model_is_a_one_line_error(tmp_path) -> None:
    path = write_config(tmp_path / "gemma.yaml", models=[{"name": GEMMA, "chat_template": True}], tasks=["passkey"],
                        context_lengths=[128], depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))  # fmt: skip
    with pytest.raises(ConfigError) as info:
        resolve_model_defaults(load_config(path))
    assert str(info.value) == (
        f"{path}: models[0].chat_template: true, but {GEMMA} is a base model without a chat template; "
        "set models[0].chat_template: false or remove it (plain prompts are the default)"
    )


def test_validate_refuses_chat_template_true_on_a_base_model(tmp_path, capsys) -> None:
    path = write_config(tmp_path / "gemma.yaml", models=[{"name": GEMMA, "chat_template": True}], tasks=["passkey"],
                        context_lengths=[128], depths=[0.5], samples=1, output_dir=str(tmp_path / "run"))  # fmt: skip
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "models[0].chat_template: true" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@pytest.fixture()
def fake_base_builtin(tmp_path, tiny_model_dir, smollm2_tokenizer, monkeypatch):
    """A built-in alias marked base model whose 'cached copy' is the tiny Llama with a template-less tokenizer."""
    import shutil

    folder = tmp_path / "tiny-base"
    shutil.copytree(tiny_model_dir, folder)
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(folder)
    spec = BuiltinModel(name="tiny-base", description="test", package="none", package_version="0", module="none",
                        gguf_file="none.gguf", upstream="none", base_model=True)  # fmt: skip
    monkeypatch.setitem(registry.BUILTIN_MODELS, spec.name, spec)
    import evalkit.models.hf as hf

    monkeypatch.setattr(hf, "ensure_builtin", lambda s: CachedBuiltin(folder, "tiny-base==0 gguf-sha256:0", "0"))
    return spec.name


def test_a_run_of_a_base_model_records_the_resolved_plain_prompt(tmp_path, fake_base_builtin) -> None:
    path = write_config(tmp_path / "cfg.yaml", models=[{"name": fake_base_builtin, "dtype": "float32", "device": "cpu",
                        "max_new_tokens": 8}], tasks=["passkey"], context_lengths=[128], depths=[0.5], samples=1,
                        output_dir=str(tmp_path / "run"), save_prompts=True)  # fmt: skip
    summary = run_eval(load_config(path), path, write_report=False, quiet=True)
    assert summary.ran == 1
    header = read_header(tmp_path / "run")
    assert header["config"]["models"][0]["chat_template"] is False
    assert header["config_hash"] == config_hash(resolve_model_defaults(load_config(path)))
    (record,) = records(tmp_path / "run")
    assert record["skip_reason"] == ""
    prompts = (tmp_path / "run").glob("prompts*.jsonl")
    text = "".join(p.read_text() for p in prompts)
    assert text and "<|im_start|>" not in text  # plain text, no ChatML turns

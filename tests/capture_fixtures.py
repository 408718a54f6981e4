"""Tiny random-init causal LMs of several families, built from configs (no network), for capture tests.

Every model has 2 layers, hidden 64, 4 query heads (2 key/value heads where the family has GQA), vocab 256 and a
large ``initializer_range`` so attention is peaky (tests check it), in float32 and eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

VOCAB = 256
WINDOW = 8  # sliding window, shorter than the test prompts so the window and the cache truncation matter


@dataclass(frozen=True)
class Family:
    """A family under test: how to build it and what capture should do with it."""

    name: str
    inner: str  # the inner kernel capture picks by default
    sliding: bool  # at least one sliding-window layer


def _common(**extra) -> dict:
    values = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB)
    values.update(extra)
    return values


def _build(name: str):
    import transformers as tf

    gqa = dict(num_key_value_heads=2, head_dim=16, pad_token_id=0)
    if name == "llama":
        return tf.LlamaForCausalLM(tf.LlamaConfig(**_common(initializer_range=0.5, **gqa)))
    if name == "qwen2":
        config = tf.Qwen2Config(**_common(initializer_range=0.5, use_sliding_window=True, sliding_window=WINDOW,
                                          layer_types=["sliding_attention", "full_attention"], **gqa))  # fmt: skip
        return tf.Qwen2ForCausalLM(config)
    if name == "qwen3":
        return tf.Qwen3ForCausalLM(tf.Qwen3Config(**_common(initializer_range=0.5, **gqa)))
    if name == "mistral":
        return tf.MistralForCausalLM(tf.MistralConfig(**_common(initializer_range=0.5, sliding_window=WINDOW, **gqa)))
    if name == "phi3":
        return tf.Phi3ForCausalLM(tf.Phi3Config(**_common(initializer_range=0.5, num_key_value_heads=2, pad_token_id=0,
                                                                 bos_token_id=1, eos_token_id=2)))
    if name == "gpt2":
        config = tf.GPT2Config(n_embd=64, n_layer=2, n_head=4, vocab_size=VOCAB, n_positions=64, initializer_range=0.5,
                                bos_token_id=0, eos_token_id=0)
        return tf.GPT2LMHeadModel(config)
    if name == "gpt_neox":
        config = tf.GPTNeoXConfig(**_common(initializer_range=0.5, max_position_embeddings=64))
        return tf.GPTNeoXForCausalLM(config)
    if name == "gemma3":
        config = tf.Gemma3TextConfig(**_common(initializer_range=0.5, sliding_window=WINDOW, query_pre_attn_scalar=16,
                                               layer_types=["sliding_attention", "full_attention"], **gqa))  # fmt: skip
        return tf.Gemma3ForCausalLM(config)
    if name == "gemma2":  # logit softcap: only the eager kernel computes it (sdpa refuses)
        config = tf.Gemma2Config(**_common(initializer_range=0.5, sliding_window=WINDOW, query_pre_attn_scalar=16,
                                           attn_logit_softcapping=15.0, **gqa))  # fmt: skip
        return tf.Gemma2ForCausalLM(config)
    if name == "gpt_oss":  # attention sinks: only the eager kernel computes them on CPU
        config = tf.GptOssConfig(**_common(initializer_range=0.15, sliding_window=WINDOW, num_local_experts=4,
                                           num_experts_per_tok=2, **gqa))  # fmt: skip
        return tf.GptOssForCausalLM(config)
    raise KeyError(name)


FAMILIES = (
    Family("llama", "sdpa", sliding=False),
    Family("qwen2", "sdpa", sliding=True),
    Family("qwen3", "sdpa", sliding=False),
    Family("mistral", "sdpa", sliding=True),
    Family("phi3", "sdpa", sliding=False),
    Family("gpt2", "sdpa", sliding=False),
    Family("gpt_neox", "sdpa", sliding=False),
    Family("gemma3", "sdpa", sliding=True),
    Family("gemma2", "eager", sliding=True),
    Family("gpt_oss", "eager", sliding=True),
)


def build_model(name: str, seed: int = 0):
    """A fresh tiny model of family ``name`` (float32, eval mode, default attention implementation)."""
    torch.manual_seed(seed)
    model = _build(name).float().eval()
    # q/k norms (Qwen3, Gemma) cap the logits near sqrt(head_dim): widen their gains so attention stays peaky
    with torch.no_grad():
        for module_name, parameter in model.named_parameters():
            if module_name.endswith(("q_norm.weight", "k_norm.weight")):
                parameter.normal_(1.0 if "gemma" in name else 2.0, 0.5)  # Gemma scales by (1 + weight)
            if module_name.endswith("sinks"):  # gpt-oss: sinks large enough to take a visible share
                parameter.normal_(3.0, 1.0)
    return model


def build_falcon():
    """A tiny Falcon: outside transformers' AttentionInterface up to some 5.x releases, inside it in later ones
    (5.25 routes it); ``calls_attention_interface`` asks the installed version which."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.FalconConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, vocab_size=VOCAB,
                             initializer_range=0.5)
    return tf.FalconForCausalLM(config).float().eval()


def calls_attention_interface(build) -> bool:
    """Whether the installed transformers runs this family's attention through its AttentionInterface.

    Asked of the version by behaviour, not assumed: a counting kernel is registered, the model (from ``build``)
    is switched to it and run once; the family routes when the kernel was called."""
    from transformers import AttentionInterface

    calls = []
    sdpa = AttentionInterface()["sdpa"]

    def counting_kernel(module, *args, **kwargs):
        calls.append(module)
        return sdpa(module, *args, **kwargs)

    AttentionInterface.register("evalkit_counting_probe", counting_kernel)
    model = build()
    try:
        model.set_attn_implementation("evalkit_counting_probe")
    except (ValueError, NotImplementedError):  # the family refuses a registered kernel: it does not route
        return False
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4]]))
    return bool(calls)


def build_mamba():
    """A tiny Mamba: no attention layers at all (``_can_set_attn_implementation`` still says True)."""
    import transformers as tf

    torch.manual_seed(0)
    return tf.MambaForCausalLM(tf.MambaConfig(hidden_size=32, num_hidden_layers=2, vocab_size=VOCAB, state_size=4))

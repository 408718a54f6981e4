"""A tiny Llama GGUF written in the test (gguf package): SmolLM2's tokenizer metadata, random float32 weights.

About 1.6 MB (the 49,152-token embedding at width 8, one layer); transformers converts it in about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import smollm2_gguf_path

HIDDEN, FFN, HEADS, KV_HEADS, LAYERS = 8, 16, 2, 1, 1


def _tokenizer_fields() -> dict:
    import gguf

    reader = gguf.GGUFReader(smollm2_gguf_path())
    fields = reader.fields
    return {
        "tokens": fields["tokenizer.ggml.tokens"].contents(),
        "token_types": fields["tokenizer.ggml.token_type"].contents(),
        "merges": fields["tokenizer.ggml.merges"].contents(),
    }


_TOKENIZER: dict = {}


def write_tiny_gguf(path: Path, seed: int = 0) -> Path:
    """Write a one-layer Llama GGUF to ``path`` (weights drawn from ``seed``; same seed, same bytes)."""
    import gguf

    if not _TOKENIZER:
        _TOKENIZER.update(_tokenizer_fields())
    vocab = len(_TOKENIZER["tokens"])
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(512)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(_TOKENIZER["tokens"])
    writer.add_token_types(_TOKENIZER["token_types"])
    writer.add_token_merges(_TOKENIZER["merges"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(False)
    rng = np.random.default_rng(seed)

    def add(name: str, *shape: int) -> None:  # PyTorch shapes [out, in]; the writer stores them in ggml order
        writer.add_tensor(name, rng.normal(0, 0.2, shape).astype(np.float32))

    add("token_embd.weight", vocab, HIDDEN)
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    head_dim = HIDDEN // HEADS
    for layer in range(LAYERS):
        prefix = f"blk.{layer}."
        writer.add_tensor(prefix + "attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(prefix + "ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        add(prefix + "attn_q.weight", HIDDEN, HIDDEN)
        add(prefix + "attn_k.weight", KV_HEADS * head_dim, HIDDEN)
        add(prefix + "attn_v.weight", KV_HEADS * head_dim, HIDDEN)
        add(prefix + "attn_output.weight", HIDDEN, HIDDEN)
        add(prefix + "ffn_gate.weight", FFN, HIDDEN)
        add(prefix + "ffn_up.weight", FFN, HIDDEN)
        add(prefix + "ffn_down.weight", HIDDEN, FFN)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path

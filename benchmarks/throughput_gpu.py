"""GPU throughput: the prefill floor (b) against evalkit full (d) on a random-init ~1B Llama in bf16.

Same ways as ``benchmarks/throughput.py`` (see there), on a Llama-3.2-1B-shaped model (16 layers, hidden
2048, 32 heads, 8 kv heads, SmolLM2's 49k vocabulary: 1.07 B parameters) built from a config, no
download. Prompts: the passkey task built with the SmolLM2 tokenizer, 11 depths at 8k and 32k tokens.
Prints tokens/s of (b) (prompt tokens / time), evalkit's effective tokens/s (the same prompt tokens /
its time) and (d)/(b), after one warm-up pass of each way.

Examples:
    python benchmarks/throughput_gpu.py                      # cuda, bfloat16, 8192 and 32768 tokens
    python benchmarks/throughput_gpu.py --tiny               # CPU smoke test: tiny model, short prompts
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from throughput import LABELS, build_items, run_way, way_evalkit, way_floor  # noqa: E402

SHAPES = {
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192),
    "tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                 intermediate_size=128),
}  # fmt: skip


def load(args: argparse.Namespace):
    """The random-init model on the device with the SmolLM2 tokenizer, as an evalkit LoadedModel."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from evalkit.models import ensure_builtin, get_builtin, load_from_objects

    tokenizer = AutoTokenizer.from_pretrained(ensure_builtin(get_builtin("smollm2-135m-instruct")).path)
    config = LlamaConfig(**SHAPES[args.shape], vocab_size=len(tokenizer), max_position_embeddings=max(args.lengths) + 64,
                         tie_word_embeddings=True, initializer_range=0.02, attn_implementation="sdpa",
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(config).to(getattr(torch, args.dtype))
    params = sum(p.numel() for p in model.parameters())
    return load_from_objects(model, tokenizer, name=f"random-llama-{args.shape}"), params


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke test: tiny model, float32, 256/512 tokens")
    parser.add_argument("--lengths", type=int, nargs="+", default=None)
    parser.add_argument("--depths", type=int, default=11)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    args.shape, args.device, args.dtype = ("tiny", "cpu", "float32") if args.tiny else ("1b", "cuda", "bfloat16")
    args.lengths = args.lengths or ([256, 512] if args.tiny else [8192, 32768])
    return args


def main(argv: list[str] | None = None) -> None:
    from evalkit.attention.capture import AttentionCapture

    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --tiny for the CPU smoke test")
    loaded, params = load(args)
    depths = [i / (args.depths - 1) for i in range(args.depths)]
    print(f"{loaded.name}: {params / 1e9:.2f} B parameters, {args.dtype}, {args.device}; "
          f"{args.depths} depths x {args.lengths} tokens")  # fmt: skip
    rows = []
    for length in args.lengths:
        items = build_items(loaded, [length], depths, seed=0)
        tokens = sum(len(i.ids) for i in items)
        times: dict[str, list[float]] = {"b": [], "d": []}
        peaks: dict[str, float] = {}
        for round_index in range(args.rounds + 1):  # round 0 warms up (kernels, allocator) and is not counted
            for way in ("b", "d") if round_index % 2 == 0 else ("d", "b"):
                capture = AttentionCapture.attach(loaded.model) if way == "d" else None
                try:
                    fn = (lambda: way_floor(loaded, items, args)) if way == "b" else (
                        lambda: way_evalkit(loaded, items, args, reuse=True, capture=capture))
                    elapsed, _counter, peak, _ = run_way(loaded, fn, args.device)
                finally:
                    if capture is not None:
                        capture.detach()
                if round_index:
                    times[way].append(elapsed)
                    peaks[way] = max(peaks.get(way, 0.0), peak)
        b, d = statistics.median(times["b"]), statistics.median(times["d"])
        rows.append((length, tokens, b, d, peaks))
    print("| length | prompts | prompt tokens | (b) s | (b) tokens/s | (d) s | (d) effective tokens/s | (d)/(b) | peak MiB (b) / (d) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for length, tokens, b, d, peaks in rows:
        print(f"| {length} | {args.depths} | {tokens} | {b:.2f} | {tokens / b:,.0f} | {d:.2f} | {tokens / d:,.0f} | "
              f"{d / b:.2f} | {peaks['b']:.0f} / {peaks['d']:.0f} |")  # fmt: skip
    print(f"(b) = {LABELS['b']}; (d) = {LABELS['d']}")


if __name__ == "__main__":
    main()

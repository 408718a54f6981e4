"""Benchmark attention capture against plain sdpa (and eager ``output_attentions``) on one prefill.

Random-init Llama-shaped models (no download). Variants are interleaved in one process; each time is the median
of ``--reps`` repetitions. Peak memory: on CPU one child process per variant and length (peak RSS of the forward,
via /proc VmHWM); on CUDA ``torch.cuda.max_memory_allocated``.

Examples:
    python benchmarks/attention_capture.py                      # CPU, SmolLM2-135M shape with 4 layers
    python benchmarks/attention_capture.py --layers 30 --lengths 512 2048
    python benchmarks/attention_capture.py --device cuda --dtype bfloat16 --preset 1b --lengths 8192 32768
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

PRESETS = {
    # SmolLM2-135M: hidden 576, 30 layers, 9 heads, 3 kv heads
    "smollm2": dict(hidden_size=576, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                    intermediate_size=1536, vocab_size=49152),
    # Llama-3.2-1B: 1.24 B parameters
    "1b": dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
               intermediate_size=8192, vocab_size=128256),
}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One way to run the prefill: the inner kernel, how many rows are captured (0: none), and extras."""

    label: str
    inner: str  # sdpa | flash_attention_2 | eager
    rows: int = 0  # captured query rows; 0 = no capture
    attached: bool = False  # capture attached (wrapper in place) even when rows == 0
    output_attentions: bool = False


def variants_for(device: str) -> list[Variant]:
    found = [
        Variant("sdpa", "sdpa"),
        Variant("sdpa, capture attached, idle", "sdpa", attached=True),
        Variant("sdpa + capture 1 row", "sdpa", rows=1),
        Variant("sdpa + capture 8 rows", "sdpa", rows=8),
        Variant("eager output_attentions", "eager", output_attentions=True),
    ]
    if device == "cuda" and _flash_available():
        found += [Variant("flash2", "flash_attention_2"), Variant("flash2 + capture 1 row", "flash_attention_2", 1),
                  Variant("flash2 + capture 8 rows", "flash_attention_2", 8)]  # fmt: skip
    return found


def _flash_available() -> bool:
    try:
        import flash_attn  # noqa: F401
    except ImportError:
        return False
    return True


def build_model(args: argparse.Namespace):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = dict(PRESETS[args.preset])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    config = LlamaConfig(**shape, tie_word_embeddings=True, max_position_embeddings=max(args.lengths) + 16,
                         initializer_range=0.05, attn_implementation="sdpa")  # fmt: skip
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(config)
    return model.to(getattr(torch, args.dtype)).eval()


def prefill(model, variant: Variant, ids, device: str) -> tuple[float, float]:
    """One prefill of ``ids`` [1, N] as ``variant`` runs it: (seconds, seconds inside the capture's own work).
    The work is timed around every layer's row recomputation; meaningful on CPU only (CUDA is async)."""
    import torch

    from evalkit.attention.capture import AttentionCapture

    n = ids.shape[1]
    capture = None
    if variant.rows or variant.attached:
        capture = AttentionCapture.attach(model, variant.inner)
    else:
        model.set_attn_implementation(variant.inner)
    work: list[float] = []
    try:
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.inference_mode():
            if variant.rows:
                rows = torch.arange(n - variant.rows, n)[None]  # [1, Q]: the last prompt positions
                cut = [0, n // 10, n // 2, n // 2 + 16, n - 32, n]  # five regions tiling the prompt
                spans = torch.tensor([[[a, b] for a, b in zip(cut, cut[1:])]])  # [1, 5, 2]
                with _timed_capture_work(work), capture.record(rows, spans):
                    model(ids, logits_to_keep=1)
            else:
                model(ids, logits_to_keep=1, output_attentions=variant.output_attentions)
        if device == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, sum(work)
    finally:
        if capture is not None:
            capture.detach()


@contextlib.contextmanager
def _timed_capture_work(totals: list[float]):
    """Benchmark-only instrumentation: time each layer's capture work (the wrapper's part after the kernel)."""
    from evalkit.attention.capture import AttentionRecording

    original = AttentionRecording._observe

    def timed(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            totals.append(time.perf_counter() - start)

    AttentionRecording._observe = timed
    try:
        yield
    finally:
        AttentionRecording._observe = original


def eager_bytes(model, n: int, dtype_bytes: int) -> int:
    """Memory that ``output_attentions`` keeps: one [heads, N, N] tensor per layer."""
    config = model.config
    return config.num_hidden_layers * config.num_attention_heads * n * n * dtype_bytes


def _runnable(model, variant: Variant, n: int, args: argparse.Namespace) -> str:
    """'' if the variant runs at this length, else the reason it is skipped."""
    import torch

    if variant.output_attentions:
        need = eager_bytes(model, n, torch.finfo(getattr(torch, args.dtype)).bits // 8)
        if need > args.eager_limit_gb * 2**30:
            return f"skipped: attention weights alone need {need / 2**30:.1f} GB"
    return ""


@dataclass(frozen=True)
class Timing:
    """Seconds over the repetitions of one (variant, N). On a shared machine noise only adds: compare minima too."""

    median_s: float
    min_s: float
    work_min_s: float  # least time inside the capture's row recomputation (0 without capture)


def time_all(args: argparse.Namespace) -> dict[tuple[str, int], Timing | str]:
    """Timing (or why skipped) per (variant label, N); all variants interleaved within each repetition."""
    import torch

    model = build_model(args)
    samples: dict[tuple[str, int], list[tuple[float, float]]] = {}
    results: dict[tuple[str, int], Timing | str] = {}
    for n in args.lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, n), device=args.device)
        todo = []
        for variant in variants_for(args.device):
            reason = _runnable(model, variant, n, args)
            if reason:
                results[variant.label, n] = reason
            else:
                todo.append(variant)
                samples[variant.label, n] = []
        for variant in todo:  # warm-up (kernels, allocator), not timed
            prefill(model, variant, ids, args.device)
        for repetition in range(args.reps):
            for variant in todo:
                samples[variant.label, n].append(prefill(model, variant, ids, args.device))
            print(f"  N={n}: repetition {repetition + 1}/{args.reps} done", file=sys.stderr, flush=True)
    for key, values in samples.items():
        walls, works = zip(*values)
        results[key] = Timing(statistics.median(walls), min(walls), min(works))
    return results


def time_capture_math(args: argparse.Namespace, times: dict) -> None:
    """The capture's recomputation alone, on the model's shapes (least of 20 runs, times the layer count): the
    overhead it adds to a prefill, free of the noise of timing two whole forwards on a shared machine."""
    import torch

    from evalkit.attention.capture_math import mask_bias, region_mass

    shape = dict(PRESETS[args.preset], num_hidden_layers=args.layers or PRESETS[args.preset]["num_hidden_layers"])
    heads, kv_heads = shape["num_attention_heads"], shape["num_key_value_heads"]
    dim, layers = shape["hidden_size"] // heads, shape["num_hidden_layers"]
    dtype = getattr(torch, args.dtype)
    print(f"\ncapture recomputation alone, all {layers} layers (least of 20); share = of the plain sdpa prefill "
          "minimum; working set = row masks + chunk temporaries, per layer")
    print("| rows | " + " | ".join(f"N={n}" for n in args.lengths) + " |")
    print("| --- |" + " --- |" * len(args.lengths))
    for n_rows in (1, 8):
        cells = []
        for n in args.lengths:
            query = torch.randn(1, heads, n_rows, dim, device=args.device, dtype=dtype)  # [B, H, Q, D]
            key = torch.randn(1, kv_heads, n, dim, device=args.device, dtype=dtype)  # [B, Hkv, N, D]
            rows = torch.arange(n - n_rows, n, device=args.device)[None]
            bounds = torch.tensor([[[0, n // 10], [n // 10, n // 2], [n // 2, n - 32], [n - 32, n]]])
            best = float("inf")
            for _ in range(20):
                if args.device == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                bias = mask_bias("sdpa", None, rows, n, n, heads // kv_heads, row_span=(n - n_rows, n - 1))
                region_mass(query, key, bounds.to(args.device), dim**-0.5, bias)
                if args.device == "cuda":
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - start)
            plain = times.get(("sdpa", n))
            share = f" = {100 * best * layers / plain.min_s:.2f}%" if isinstance(plain, Timing) else ""
            chunk = min(n, 4096)
            working_mib = heads * n_rows * (n + 4 * chunk) * 4 / 2**20
            cells.append(f"{1e3 * best * layers:.1f} ms{share}, {working_mib:.2f} MiB")
        print(f"| {n_rows} | " + " | ".join(cells) + " |")


def _child_peak(args: argparse.Namespace, label: str, n: int, queue) -> None:
    """In a fresh process: build, warm up, reset the RSS high-water mark, run one prefill, report the peak."""
    import torch

    model = build_model(args)
    variant = next(v for v in variants_for(args.device) if v.label == label)
    ids = torch.randint(0, model.config.vocab_size, (1, n))
    prefill(model, variant, ids, args.device)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    before = _status_kib("VmRSS")
    prefill(model, variant, ids, args.device)
    queue.put((before, _status_kib("VmHWM")))


def _status_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def memory_all(args: argparse.Namespace) -> dict[tuple[str, int], tuple[float, float] | str]:
    """(peak MiB, extra MiB above the loaded model) per (variant label, N)."""
    results: dict[tuple[str, int], tuple[float, float] | str] = {}
    if args.device == "cuda":
        return _cuda_memory_all(args)
    if not Path("/proc/self/clear_refs").exists():
        return results
    context = multiprocessing.get_context("spawn")
    # glibc keeps freed heap pages and reuses them unevenly between runs, which blurs peak RSS by ~100 MiB;
    # with mmap for every allocation above 64 KiB, RSS follows the live tensors (children inherit the setting)
    os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", "65536")
    model = build_model(args)
    for n in args.lengths:
        for variant in variants_for(args.device):
            reason = _runnable(model, variant, n, args)
            if reason:
                results[variant.label, n] = reason
                continue
            queue = context.Queue()
            child = context.Process(target=_child_peak, args=(args, variant.label, n, queue))
            child.start()
            before, peak = queue.get()
            child.join()
            results[variant.label, n] = (peak / 1024, (peak - before) / 1024)
            print(f"  memory N={n} {variant.label}: {peak / 1024:.0f} MiB", file=sys.stderr, flush=True)
    return results


def _cuda_memory_all(args: argparse.Namespace):
    import torch

    model = build_model(args)
    loaded = torch.cuda.memory_allocated()
    results = {}
    for n in args.lengths:
        ids = torch.randint(0, model.config.vocab_size, (1, n), device="cuda")
        for variant in variants_for(args.device):
            reason = _runnable(model, variant, n, args)
            if reason:
                results[variant.label, n] = reason
                continue
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            prefill(model, variant, ids, "cuda")
            peak = torch.cuda.max_memory_allocated()
            results[variant.label, n] = (peak / 2**20, (peak - loaded) / 2**20)
    return results


def print_tables(args, times, memory) -> None:
    labels = [v.label for v in variants_for(args.device)]
    inner_of = {v.label: v.inner for v in variants_for(args.device)}
    plain_of = {"sdpa": "sdpa", "eager": "sdpa", "flash_attention_2": "flash2"}
    print(f"\nprefill seconds, median of {args.reps} (x: ratio of medians to the plain kernel; min x: ratio of the "
          "minima; work: least time in the capture's own recomputation, as a share of the plain kernel's minimum)")
    print("| variant | " + " | ".join(f"N={n}" for n in args.lengths) + " |")
    print("| --- |" + " --- |" * len(args.lengths))
    for label in labels:
        cells = []
        for n in args.lengths:
            value, plain = times[label, n], times.get((plain_of[inner_of[label]], n))
            if isinstance(value, str) or not isinstance(plain, Timing):
                cells.append(str(value))
                continue
            cell = f"{value.median_s:.3f} s x{value.median_s / plain.median_s:.3f}"
            cell += f" (min x{value.min_s / plain.min_s:.3f}"
            if value.work_min_s and args.device == "cpu":
                cell += f", work {100 * value.work_min_s / plain.min_s:.2f}%"
            cells.append(cell + ")")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if not memory:
        return
    what = "CUDA max_memory_allocated" if args.device == "cuda" else "peak RSS of the forward (child process)"
    print(f"\npeak memory, {what}: total MiB (extra above the loaded model); ratio = total / plain kernel")
    print(f"| variant | " + " | ".join(f"N={n}" for n in args.lengths) + " |")
    print("| --- |" + " --- |" * len(args.lengths))
    for label in labels:
        cells = []
        for n in args.lengths:
            value = memory.get((label, n), "n/a")
            plain = memory.get((plain_of[inner_of[label]], n))
            if isinstance(value, str) or not isinstance(plain, tuple):
                cells.append(str(value))
            else:
                cells.append(f"{value[0]:.0f} (+{value[1]:.0f}) x{value[0] / plain[0]:.2f}")
        print(f"| {label} | " + " | ".join(cells) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smollm2")
    parser.add_argument("--layers", type=int, default=None,
                        help="override the preset's depth (default on CPU: 4; the full 30 layers take ~10 s "
                             "per 512-token prefill on 2 cores)")  # fmt: skip
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048, 8192])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--eager-limit-gb", type=float, default=8.0, help="skip eager above this attention size")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurements")
    args = parser.parse_args(argv)
    if args.layers is None and args.device == "cpu":
        args.layers = 4
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    import transformers

    shape = dict(PRESETS[args.preset], num_hidden_layers=args.layers or PRESETS[args.preset]["num_hidden_layers"])
    print(f"preset {args.preset} {shape}, device {args.device}, dtype {args.dtype}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, threads {torch.get_num_threads()}")  # fmt: skip
    times = time_all(args)
    memory = {} if args.no_memory else memory_all(args)
    print_tables(args, times, memory)
    time_capture_math(args, times)


if __name__ == "__main__":
    main()

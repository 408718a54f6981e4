"""Throughput of a depth x length grid: the naive way, the prefill floor, and evalkit with and without reuse.

One process, the same prompts (the passkey task built by evalkit's PromptBuilder, one sample, every depth
and length), four ways, interleaved in rounds (the order rotates each round) and timed per round:

  (a) naive      model.generate per trial + a second eager forward (prompt + gold) with
                 output_attentions=True for the gold log-prob and the attention mass
  (b) floor      one bare sdpa prefill of every prompt (logits of the last position only): what any
                 harness that runs each prompt at least once cannot go below
  (c) evalkit    run_prompt per trial with attention capture, prefix reuse off: one forward over
                 prompt + drafted answer per trial (models/draft.py)
  (d) evalkit    the same with prefix reuse (reuse groups in ascending depth)

Columns: median wall time over rounds, tokens in multi-token forwards (prefill-like: prompts, prefix
growth, trial extensions, drafts, gold scoring) and 1-token decode forwards, peak resident memory above the
state before the way ran (CPU: /proc VmHWM reset via clear_refs; CUDA: max_memory_allocated), and time /
(b). A second table splits the times by context length. (c) and (d) are checked against each other
(answers, log-probs) and their attention mass against (a).

What bounds (d)/(b): reuse feeds the haystack once plus, per trial, everything from its needle on. With
depths 0, 0.1, ..., 1 that is 6.5 prompts' worth of tokens instead of 11 (0.59), but the tokens it skips are
the early ones, whose attention is cheapest: with a per-token cost a + b * position, the 11 trials cost
0.59 * linear part + 0.74 * attention part of the floor (sum of 1 - d^2 over the depths, plus the haystack
once: 8.15 of 11). The longer the prompt, the larger the attention part and the closer (d)/(b) gets to 0.74.

Examples:
    python benchmarks/throughput.py                                  # SmolLM2 on CPU, 11 depths x 512/1024/2048
    python benchmarks/throughput.py --rounds 1 --lengths 256 512     # quicker
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import torch  # noqa: E402

from evalkit.types import REGION_CONTEXT_BEFORE, REGION_NAMES  # noqa: E402

WAYS = ("a", "b", "c", "d")
LABELS = {
    "a": "(a) naive: generate + eager output_attentions",
    "b": "(b) floor: bare sdpa prefill per prompt",
    "c": "(c) evalkit, reuse off (answer + log-prob + capture)",
    "d": "(d) evalkit full, reuse on (answer + log-prob + capture)",
}


@dataclass(frozen=True)
class Item:
    """One trial of the grid: prompt ids, its region spans, the gold ids, its reuse prefix length."""

    ids: tuple[int, ...]
    spans: list[list[int]]  # [R, 2] region spans in REGION_NAMES order
    gold: list[int]
    prefix_tokens: int  # tokens before the needle (the reusable prefix)
    length: int


@dataclass
class Counter:
    """Counts tokens fed to the model, split into multi-token and one-token forwards."""

    prefill_tokens: int = 0
    decode_tokens: int = 0
    calls: list = field(default_factory=list)

    def __call__(self, _module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        if ids.shape[1] > 1:
            self.prefill_tokens += ids.shape[0] * ids.shape[1]
        else:
            self.decode_tokens += ids.shape[0]


def build_items(loaded, lengths: list[int], depths: list[float], seed: int, task_name: str = "passkey") -> list[Item]:
    """The grid's prompts as evalkit builds them (reuse-group order: length, then ascending depth)."""
    from evalkit.config.schema import ModelConfig
    from evalkit.prompt.builder import PromptBuilder
    from evalkit.tasks import haystack_for_task, instantiate_needle, load_task, prompt_parts

    task = load_task(task_name)
    needle = instantiate_needle(task, seed)
    parts = prompt_parts(task, needle, ModelConfig(name="benchmark"))
    builder = PromptBuilder(loaded.tokenizer)
    source = haystack_for_task(task)
    gold = builder.gold_continuation_ids(parts, needle.answer)
    items = []
    for length in lengths:
        for depth in sorted(depths):
            prompt = builder.build_prompt(parts, source.sentences(seed), length, depth)
            spans = [[prompt.regions[n].token_start, prompt.regions[n].token_end] for n in REGION_NAMES]
            items.append(Item(prompt.input_ids, spans, gold, prompt.regions[REGION_CONTEXT_BEFORE].token_end, length))
    return items


def _timed(items: list[Item], spent: dict[int, float] | None):
    """The items, adding each one's wall time (the loop body) to ``spent[length]``."""
    for item in items:
        started = time.perf_counter()
        yield item
        if spent is not None:
            spent[item.length] = spent.get(item.length, 0.0) + time.perf_counter() - started


def way_floor(loaded, items: list[Item], _args, spent: dict[int, float] | None = None) -> list:
    model = loaded.model
    with torch.inference_mode():
        for item in _timed(items, spent):
            model(input_ids=torch.tensor([item.ids], device=loaded.device), use_cache=True, logits_to_keep=1)
    return []


def way_evalkit(loaded, items: list[Item], args, reuse: bool, capture, spent: dict[int, float] | None = None) -> list:
    from evalkit.models import run_prompt
    from evalkit.models.prefix import PrefixCache

    prefix = PrefixCache(loaded) if reuse else None
    results = []
    for item in _timed(items, spent):
        rec = capture.record(torch.tensor([[len(item.ids) - 1]]), torch.tensor([item.spans]))
        reuse_args = {"prefix": prefix, "prefix_tokens": item.prefix_tokens} if reuse else {}
        out = run_prompt(loaded, item.ids, item.gold, args.max_new_tokens, prefill_context=rec, **reuse_args)
        results.append((out.generated_token_ids, out.gold_logprob_sum, rec.mass[0, :, :, 0].cpu()))  # [layers, heads, R]
    return results


def way_captured(loaded, items: list[Item], args, reuse: bool, spent: dict[int, float] | None = None) -> list:
    """``way_evalkit`` with a capture attached for this way only (detached after it)."""
    from evalkit.attention.capture import AttentionCapture

    capture = AttentionCapture.attach(loaded.model)
    try:
        return way_evalkit(loaded, items, args, reuse, capture, spent)
    finally:
        capture.detach()


def way_naive(loaded, items: list[Item], args, spent: dict[int, float] | None = None) -> list:
    model = loaded.model
    results = []
    for item in _timed(items, spent):
        ids = torch.tensor([item.ids], device=loaded.device)
        with torch.inference_mode():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                 max_new_tokens=args.max_new_tokens, eos_token_id=list(loaded.stop_token_ids),
                                 pad_token_id=loaded.stop_token_ids[0])  # fmt: skip
        answer = out[0, ids.shape[1] :].tolist()
        model.set_attn_implementation("eager")
        try:
            full = torch.tensor([list(item.ids) + item.gold[:-1]], device=loaded.device)
            with torch.inference_mode():
                eager = model(input_ids=full, output_attentions=True, use_cache=False)
        finally:
            model.set_attn_implementation("sdpa")
        logprobs = eager.logits[0, len(item.ids) - 1 :].float().log_softmax(-1)  # [G, V]
        gold_lp = float(logprobs.gather(-1, torch.tensor(item.gold, device=logprobs.device)[:, None]).sum())
        row = len(item.ids) - 1
        mass = torch.stack([
            torch.stack([a[0, :, row, s:e].sum(-1) for s, e in item.spans], -1) for a in eager.attentions
        ]).float().cpu()  # [layers, heads, R]  # fmt: skip
        del eager
        results.append((tuple(answer), gold_lp, mass))
    return results


@contextmanager
def peak_memory(device: str):
    """Yields a dict that gets 'peak_mib': peak memory above the state on entry."""
    box: dict[str, float] = {}
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        yield box
        torch.cuda.synchronize()
        box["peak_mib"] = (torch.cuda.max_memory_allocated() - before) / 2**20
        return
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
    yield box
    box["peak_mib"] = (_status_kib("VmHWM") - before) / 1024


def _status_kib(name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {name}")


def run_way(loaded, fn: Callable[[], list], device: str) -> tuple[float, Counter, float, list]:
    counter = Counter()
    handle = loaded.model.register_forward_pre_hook(counter, with_kwargs=True)
    try:
        with peak_memory(device) as box:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            results = fn()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
    finally:
        handle.remove()
    return elapsed, counter, box["peak_mib"], results


def check(results: dict[str, list]) -> list[str]:
    """Lines comparing (c), (d) and (a): answers, log-probs, attention mass."""
    lines = []
    c, d = results["c"], results["d"]
    same = sum(x[0] == y[0] for x, y in zip(c, d))
    lp = max(abs(x[1] - y[1]) for x, y in zip(c, d))
    mass = max(float((x[2] - y[2]).abs().max()) for x, y in zip(c, d))
    lines.append(f"(d) vs (c): {same}/{len(c)} answers equal, max |gold log-prob diff| {lp:.2e}, max |mass diff| {mass:.2e}")
    if "a" in results:
        a = results["a"]
        same = sum(x[0][: len(y[0])] == y[0] for x, y in zip(a, d))
        lp = max(abs(x[1] - y[1]) for x, y in zip(a, d))
        mass = max(float((x[2] - y[2]).abs().max()) for x, y in zip(a, d))
        lines.append(f"(d) vs (a): {same}/{len(a)} answers equal, max |gold log-prob diff| {lp:.2e}, max |mass diff| {mass:.2e}")
    return lines


def print_table(times: dict[str, list[float]], counters: dict, peaks: dict, title: str) -> None:
    floor = statistics.median(times["b"])
    print(title)
    print("| way | wall s (median) | rounds | prefill tokens | decode tokens | peak MiB | time / (b) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for way in WAYS:
        if way not in times:
            continue
        median = statistics.median(times[way])
        counter = counters[way]
        print(f"| {LABELS[way]} | {median:.2f} | {' '.join(f'{t:.1f}' for t in times[way])} | "
              f"{counter.prefill_tokens} | {counter.decode_tokens} | {max(peaks[way]):.0f} | {median / floor:.2f} |")  # fmt: skip


def print_length_table(per_length: dict[str, list[dict[int, float]]], lengths: list[int]) -> None:
    """Seconds per context length (median over rounds) and the ratios against (b) and (d)."""
    def median(way: str, length: int) -> float:
        return statistics.median(spent[length] for spent in per_length[way])

    ways = [w for w in WAYS if w in per_length]
    print("| length | " + " | ".join(f"({w}) s" for w in ways) + " | (d)/(b) | (c)/(b) |" + (" (a)/(d) |" if "a" in ways else ""))
    print("| ---: " * (len(ways) + 3 + ("a" in ways)) + "|")
    for length in lengths:
        cells = [f"{median(w, length):.2f}" for w in ways]
        ratios = [median("d", length) / median("b", length), median("c", length) / median("b", length)]
        if "a" in ways:
            ratios.append(median("a", length) / median("d", length))
        print(f"| {length} | " + " | ".join(cells) + " | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct", help="evalkit model name (alias, path, Hub id)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--depths", type=int, default=11, help="evenly spaced depths from 0 to 1")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds; the table shows medians")
    parser.add_argument("--skip-naive", action="store_true", help="leave out (a), the slowest way")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    from evalkit.config.schema import ModelConfig
    from evalkit.models import load_model
    from evalkit.attention.capture import AttentionCapture

    args = parse_args(argv)
    loaded = load_model(ModelConfig(name=args.model, dtype="float32", device="cpu"))
    depths = [i / (args.depths - 1) for i in range(args.depths)] if args.depths > 1 else [0.5]
    items = build_items(loaded, args.lengths, depths, args.seed)
    print(f"{args.model}: {len(items)} prompts ({args.depths} depths x lengths {args.lengths}), "
          f"{sum(len(i.ids) for i in items)} prompt tokens, torch threads {torch.get_num_threads()}")  # fmt: skip
    capture = AttentionCapture.attach(loaded.model)  # idle outside a record block (one ContextVar lookup per layer)
    capture.detach()  # (a) and (b) run on the plain model; (c) and (d) attach their own
    ways = {
        "a": lambda spent: way_naive(loaded, items, args, spent),
        "b": lambda spent: way_floor(loaded, items, args, spent),
        "c": lambda spent: way_captured(loaded, items, args, False, spent),
        "d": lambda spent: way_captured(loaded, items, args, True, spent),
    }
    if args.skip_naive:
        del ways["a"]
    with torch.inference_mode():  # warm-up: the first forward of a process pays one-off costs (allocator, kernels)
        loaded.model(input_ids=torch.tensor([items[0].ids], device=loaded.device), use_cache=True, logits_to_keep=1)
    times: dict[str, list[float]] = {w: [] for w in ways}
    per_length: dict[str, list[dict[int, float]]] = {w: [] for w in ways}
    peaks: dict[str, list[float]] = {w: [] for w in ways}
    counters, results = {}, {}
    order = list(ways)
    for round_index in range(args.rounds):
        for way in order[round_index % len(order) :] + order[: round_index % len(order)]:
            spent: dict[int, float] = {}
            elapsed, counter, peak, out = run_way(loaded, lambda: ways[way](spent), "cpu")
            times[way].append(elapsed)
            per_length[way].append(spent)
            peaks[way].append(peak)
            counters[way], results[way] = counter, out
            print(f"  round {round_index + 1}: {LABELS[way]}: {elapsed:.1f} s", flush=True)
    print()
    print_table(times, counters, peaks, f"{args.model}, float32, CPU, {len(items)} trials, max_new_tokens {args.max_new_tokens}")
    print()
    print_length_table(per_length, args.lengths)
    print()
    for line in check(results):
        print(line)


if __name__ == "__main__":
    main()

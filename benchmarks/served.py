"""Served-engine overhead and the value of depth-ascending order, on llama.cpp's llama-server.

The same token-id prompts (the passkey task, one sample, every depth of an 11-depth grid per length,
built by evalkit) go to one llama-server (one slot, prompt cache on, the RAM prompt cache off so that
only the slot's own prefix reuse counts), three ways, timed per round:

  (a) engine   direct POST /completion of each prompt's ids, in depth-ascending order, no evalkit logic
  (b) evalkit  ServedBackend.run of each prompt in depth-ascending order (what the runner sends)
  (c) shuffled ServedBackend.run of the same prompts in a shuffled order (no prefix left for the next one)

Printed: median seconds per way, (b)/(a) (target <= 1.05: the backend adds little) and (c)/(b) (target
>= 1.5: order matters where the engine caches prefixes). Then, unless ``--no-quickstart``, the quickstart grid
(configs/quickstart.yaml, 40 trials) run by evalkit on the transformers backend and on the same llama-server,
wall time each, and their agreement table (``evalkit agree``).

Example:
    python benchmarks/served.py --lengths 1024 2048 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))  # the llama-server helpers the tests use

from evalkit.config.schema import EvalConfig, ModelConfig  # noqa: E402
from evalkit.models.base import TrialRequest  # noqa: E402
from evalkit.models.served.backend import ServedBackend  # noqa: E402
from evalkit.models.served.engines import FORCE_BIAS, GREEDY_LLAMA  # noqa: E402
from evalkit.prompt.builder import PromptBuilder  # noqa: E402
from evalkit.prompt.controls import build_trial_prompt  # noqa: E402
from evalkit.run.plan import expand  # noqa: E402
from evalkit.run.preflight import prepare_tasks  # noqa: E402
from served_fixtures import LlamaServer, free_port, llama_server_binary  # noqa: E402

MODEL = "smollm2-135m-instruct"
DEPTHS = [i / 10 for i in range(11)]


def prompts(backend: ServedBackend, lengths: list[int], max_new_tokens: int) -> list[TrialRequest]:
    """The grid's requests, each length's depths ascending (the runner's order)."""
    cfg = EvalConfig.model_validate(dict(models=[{"name": MODEL}], tasks=["passkey"], context_lengths=lengths,
                                         depths=DEPTHS, samples=1, output_dir="unused"))  # fmt: skip
    tasks = prepare_tasks(cfg, ROOT / "configs" / "bench.yaml")
    builder = PromptBuilder(backend.info.tokenizer)
    requests = []
    for trial in sorted(expand(cfg, {n: t.spec for n, t in tasks.items()}), key=lambda t: (t.context_length, t.depth)):
        built = build_trial_prompt(builder, tasks[trial.task], trial, cfg.models[0], cfg)
        gold = builder.gold_continuation_ids(built.parts, built.needle.answer)
        requests.append(TrialRequest(tuple(built.prompt.input_ids), tuple(gold), max_new_tokens))
    return requests


def _post(url: str, payload: dict) -> None:
    req = urllib.request.Request(url + "/completion", data=json.dumps(payload).encode(),
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=600) as response:
        response.read()


def direct(url: str, requests: list[TrialRequest]) -> None:
    """The requests the backend sends (the answer, then one forced request per gold token), with no evalkit logic."""
    for r in requests:
        _post(url, {"prompt": list(r.input_ids), "n_predict": r.max_new_tokens, "return_tokens": True, **GREEDY_LLAMA})
        for k, gold in enumerate(r.gold_ids):
            _post(url, {"prompt": [*r.input_ids, *r.gold_ids[:k]], "n_predict": 1, "n_probs": 1,
                        "logit_bias": [[gold, FORCE_BIAS]], "return_tokens": True, **GREEDY_LLAMA})


def print_ratios(times: dict[str, list[float]], rounds: int, prompts: int, lengths: list[int]) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"| way | median s over {rounds} rounds ({prompts} prompts, lengths {lengths}) |")
    print("|---|---|")
    for key, label in (("a", "(a) engine direct"), ("b", "(b) evalkit served"), ("c", "(c) evalkit shuffled")):
        print(f"| {label} | {med[key]:.2f} |")
    print(f"(b)/(a) = {med['b'] / med['a']:.3f} (target <= 1.05); (c)/(b) = {med['c'] / med['b']:.2f} (target >= 1.5)",
          flush=True)


def quickstart(url: str, out: Path) -> None:
    """The quickstart grid on transformers and on the served engine: wall time each, then their agreement."""
    import yaml

    from evalkit.config.schema import load_config
    from evalkit.report.analysis.agreement import agreement, format_agreement
    from evalkit.report.data.load import load_results
    from evalkit.run.runner import run_eval

    base = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    walls, dirs = {}, {}
    for name in ("transformers", "llama.cpp"):
        data = dict(base, output_dir=str(out / name))
        if name == "llama.cpp":
            entry = {k: v for k, v in base["models"][0].items() if k not in ("dtype", "device")}
            data["models"] = [dict(entry, backend="served", served={"base_url": url, "max_concurrency": 1})]
        path = out / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        walls[name] = timed(lambda: run_eval(load_config(path), path, quiet=True, write_report=False))
        dirs[name] = out / name
    print(f"quickstart grid (40 trials): transformers {walls['transformers']:.0f} s, llama.cpp "
          f"{walls['llama.cpp']:.0f} s (llama.cpp / transformers = {walls['llama.cpp'] / walls['transformers']:.2f})")
    result = agreement(load_results(dirs["transformers"]), load_results(dirs["llama.cpp"]))
    print(format_agreement(result, "transformers (float32)", "llama.cpp llama-server (Q4_1)"))


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-quickstart", action="store_true", help="skip the quickstart grid comparison")
    parser.add_argument("--out", type=Path, default=Path("/tmp/evalkit-bench-served"), help="run directories")
    args = parser.parse_args(argv)
    binary = llama_server_binary()
    if binary is None:
        print("llama-server not built: run tests/served_engine/build_llama_server.sh")
        return 2
    from conftest import smollm2_gguf_path

    server = LlamaServer(binary, smollm2_gguf_path(), free_port(), ctx_tokens=max(args.lengths) + 64,
                         threads=args.threads, extra=["--cache-ram", "0"]).start()
    try:
        cfg = ModelConfig(name=MODEL, backend="served", served={"base_url": server.url, "max_concurrency": 1})
        backend = ServedBackend.load(cfg)
        requests = prompts(backend, args.lengths, args.max_new_tokens)
        shuffled = random.Random(0).sample(requests, len(requests))
        times: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        for _ in range(args.rounds):
            times["a"].append(timed(lambda: direct(server.url, requests)))
            times["b"].append(timed(lambda: [backend.run([r]) for r in requests]))
            times["c"].append(timed(lambda: [backend.run([r]) for r in shuffled]))
        print_ratios(times, args.rounds, len(requests), args.lengths)
        if not args.no_quickstart:
            import shutil

            shutil.rmtree(args.out, ignore_errors=True)
            args.out.mkdir(parents=True)
            quickstart(server.url, args.out)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

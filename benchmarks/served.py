"""Served-engine overhead and the value of depth-ascending order, on llama.cpp's llama-server.

The same token-id prompts (the passkey task, ``--samples`` samples, every depth of an 11-depth grid per length,
built by evalkit) go to one llama-server (one slot, prompt cache on, the RAM prompt cache off so that
only the slot's own prefix reuse counts), three ways, timed per round:

  (b) evalkit  ServedBackend.run of each prompt in depth-ascending order (what the runner sends); every request
               it sends is recorded (body and the server's ``timings``)
  (a) engine   the very request bodies (b) sent, in the same order, posted directly: the same work with no
               evalkit logic, so (b)/(a) is evalkit's own overhead
  (c) shuffled ServedBackend.run of the same prompts in a shuffled order (little prefix left for the next one)

An untimed warm-up (11 prompts) runs first. Printed per way: median wall seconds, requests, prompt tokens the server evaluated (``timings.prompt_n``: what
prefix reuse saved, independent of CPU noise) and the server's own compute time (``prompt_ms`` +
``predicted_ms``); then (b)/(a) (target <= 1.05) and (c)/(b) (target >= 1.5) in wall time and in prompt
tokens. Then, unless ``--no-quickstart``, the quickstart grid (configs/quickstart.yaml, 40 trials) run by
evalkit on the transformers backend and on the same llama-server, wall time each, and their agreement table.

Example:
    python benchmarks/served.py --lengths 1024 --samples 6 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout without installing
sys.path.insert(0, str(ROOT / "tests"))  # the llama-server helpers the tests use

from evalkit.config.schema import ModelConfig  # noqa: E402
from evalkit.models.base import TrialRequest  # noqa: E402
from evalkit.models.served.backend import ServedBackend  # noqa: E402
from evalkit.models.served.client import HttpClient  # noqa: E402
from served_fixtures import LlamaServer, free_port, llama_server_binary, passkey_requests  # noqa: E402

MODEL = "smollm2-135m-instruct"
DEPTHS = [i / 10 for i in range(11)]


@dataclass
class Sent:
    """What one way sent: each request's path and body, and the server's timings of each reply."""

    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)
    replies: list[object] = field(default_factory=list)

    def prompt_tokens(self) -> int:
        return sum(int(t.get("prompt_n", 0)) for t in self.timings)

    def server_s(self) -> float:
        return sum(float(t.get("prompt_ms", 0)) + float(t.get("predicted_ms", 0)) for t in self.timings) / 1000


@dataclass
class RecordingClient(HttpClient):
    """The backend's client, recording every POST it makes (for (a) to replay, and the server's timings)."""

    sent: Sent = field(default_factory=Sent)

    def post(self, path, payload):
        self.sent.bodies.append((path, json.dumps(payload).encode("utf-8")))
        reply = super().post(path, payload)
        self.sent.timings.append(reply.get("timings", {}) if isinstance(reply, dict) else {})
        self.sent.replies.append(reply.get("tokens") if isinstance(reply, dict) else None)
        return reply


def evalkit_way(backend: ServedBackend, requests: list[TrialRequest]) -> Sent:
    """(b) or (c): the backend runs each request alone, in the given order; what it sent comes back."""
    client = backend.engine.client
    client.sent = Sent()
    for request in requests:
        backend.run([request])
    return client.sent


def direct(url: str, recorded: Sent) -> Sent:
    """(a): the recorded bodies posted as they are, in order (the same work, no evalkit logic)."""
    out = Sent()
    for path, body in recorded.bodies:
        req = urllib.request.Request(url + path, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as response:
            reply = json.loads(response.read())
        out.bodies.append((path, body))
        out.timings.append(reply.get("timings", {}))
        out.replies.append(reply.get("tokens"))
    return out


def print_ratios(walls: dict[str, list[float]], clients: dict[str, list[float]], sent: dict[str, Sent], rounds: int,
                 requests: list[TrialRequest], lengths: list[int]) -> None:
    """The table per way, then the two ratios in wall time and in what the server did."""
    prompts, gold_tokens = len(requests), sum(len(r.gold_ids) for r in requests)
    med = {k: statistics.median(v) for k, v in walls.items()}
    print(f"| way | median wall s over {rounds} rounds | requests | prompt tokens evaluated | median server compute s |")
    print("|---|---|---|---|---|")
    for key, label in (("a", "(a) engine direct"), ("b", "(b) evalkit served"), ("c", "(c) evalkit shuffled")):
        way = sent[key]
        server = statistics.median(w - c for w, c in zip(walls[key], clients[key]))
        print(f"| {label} | {med[key]:.2f} | {len(way.bodies)} | {way.prompt_tokens()} | {server:.2f} |")
    forced = sum(b"logit_bias" in body for _, body in sent["b"].bodies)
    print(f"{prompts} prompts, lengths {lengths}; forced gold requests in (b): {forced} for {gold_tokens} gold tokens "
          f"(the rest read off the answers); (a) got the same replies as (b): {sent['a'].replies == sent['b'].replies}")
    # wall minus the server's compute is the client side; (b)'s less (a)'s is evalkit's own time, which CPU
    # contention on the server's compute does not reach
    own_s = statistics.median(clients["b"]) - statistics.median(clients["a"])
    print(f"(b)/(a) = {med['b'] / med['a']:.3f} wall (target <= 1.05); evalkit's own time "
          f"{own_s / len(sent['b'].bodies) * 1000:.1f} ms a request, (b)/(a) = {1 + own_s / med['a']:.4f} with the "
          "server's compute equal")
    tokens = sent["c"].prompt_tokens() / sent["b"].prompt_tokens()
    print(f"(c)/(b) = {med['c'] / med['b']:.2f} wall, {tokens:.2f} in prompt tokens evaluated (target >= 1.5)")
    # an order with no reuse at all evaluates every prompt whole: the most any order can cost over (b)
    whole = sum(len(r.input_ids) for r in requests)
    print(f"no prefix reuse at all: {whole} prompt tokens, {whole / sent['b'].prompt_tokens():.2f}x (b)'s: the ceiling "
          "of (c)/(b) in prefill for any order", flush=True)


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
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024])
    # a grid has several samples per length, each its own haystack (reuse group): the shuffled order then
    # rarely follows a prompt of its own group, as in a real run; one sample per length understates (c)
    parser.add_argument("--samples", type=int, default=6, help="samples (reuse groups) per length")
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

    import yaml

    quickstart_lengths = [] if args.no_quickstart else yaml.safe_load(
        (ROOT / "configs" / "quickstart.yaml").read_text())["context_lengths"]
    server = LlamaServer(binary, smollm2_gguf_path(), free_port(),
                         ctx_tokens=max([*args.lengths, *quickstart_lengths]) + 64,
                         threads=args.threads, extra=["--cache-ram", "0"]).start()
    try:
        cfg = ModelConfig(name=MODEL, backend="served", served={"base_url": server.url, "max_concurrency": 1})
        backend = ServedBackend.load(cfg)
        backend.engine.client = RecordingClient(server.url, timeout_s=600.0)
        requests = passkey_requests(backend.info.tokenizer, MODEL, args.lengths, DEPTHS, samples=args.samples,
                                    max_new_tokens=args.max_new_tokens)
        shuffled = random.Random(0).sample(requests, len(requests))
        walls: dict[str, list[float]] = {"a": [], "b": [], "c": []}
        clients: dict[str, list[float]] = {"a": [], "b": [], "c": []}  # wall less the server's compute
        sent: dict[str, Sent] = {}
        ways = {"b": lambda: evalkit_way(backend, requests), "a": lambda: direct(server.url, sent["b"]),
                "c": lambda: evalkit_way(backend, shuffled)}
        # warm-up, untimed: the first minutes of a fresh server are slower (weights paged in from the mmapped
        # GGUF, caches cold), which would land on (b), the way that runs first
        evalkit_way(backend, shuffled[: len(DEPTHS)])
        for _ in range(args.rounds):
            for key, way in ways.items():  # (b) first: (a) replays what it sent
                walls[key].append(timed(lambda: sent.update({key: way()})))  # noqa: B023 - called at once
                clients[key].append(walls[key][-1] - sent[key].server_s())
        print_ratios(walls, clients, sent, args.rounds, requests, args.lengths)
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

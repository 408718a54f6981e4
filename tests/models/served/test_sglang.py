"""engine: sglang against a fake SGLang that checks each request against SGLang's documented /generate API.

No real SGLang runs here (it needs a GPU build): the fake refuses (HTTP 400) any body that does not have the
documented shape (``input_ids`` or ``text``; ``sampling_params`` with ``temperature``, ``max_new_tokens``,
``stop_token_ids``; ``return_logprob`` with ``logprob_start_len`` inside the prompt), and answers as SGLang
does (``text``, ``output_ids``, ``meta_info`` with ``prompt_tokens``, ``finish_reason`` and
``input_token_logprobs`` from ``logprob_start_len`` on). Untested against a real engine.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import write_config
from evalkit.config.schema import load_config
from evalkit.run.runner import run_eval
from run_fixtures import records

GENERATE_KEYS = {"input_ids", "text", "sampling_params", "return_logprob", "logprob_start_len", "top_logprobs_num"}
SAMPLING_KEYS = {"temperature", "max_new_tokens", "stop_token_ids", "top_p", "top_k", "skip_special_tokens"}
TOKEN_LOGPROB = -0.125


def shape_problem(body: dict) -> str | None:
    """Why ``body`` is not a /generate request as SGLang documents it (None: it is)."""
    if set(body) - GENERATE_KEYS:
        return f"unknown fields {sorted(set(body) - GENERATE_KEYS)}"
    if ("input_ids" in body) == ("text" in body):
        return "give exactly one of input_ids and text"
    ids = body.get("input_ids")
    if ids is not None and not (isinstance(ids, list) and ids and all(type(i) is int for i in ids)):
        return "input_ids must be a list of ints"
    params = body.get("sampling_params", {})
    if set(params) - SAMPLING_KEYS or params.get("temperature") != 0 or type(params.get("max_new_tokens")) is not int:
        return f"sampling_params {params}"
    if not all(type(i) is int for i in params.get("stop_token_ids", [])):
        return "stop_token_ids must be ints"
    if body.get("return_logprob"):
        start = body.get("logprob_start_len")
        if type(start) is not int or not 0 <= start < len(ids or []):
            return f"logprob_start_len {start!r} outside the prompt"
    return None


class FakeSGLang:
    """SGLang's /health, /get_model_info, /tokenize and /generate with a real tokenizer and a fixed answer."""

    def __init__(self, tokenizer, answer=" 12345"):
        self.tokenizer, self.answer, self.requests = tokenizer, answer, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _reply(self, code, data):
                body = b"" if data is None else json.dumps(data).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802
                fake.requests.append((self.path, {}))
                if self.path == "/health":
                    self._reply(200, None)  # SGLang answers an empty 200
                else:
                    self._reply(200, {"model_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "is_generation": True})

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                self._reply(*fake.route(self.path, body))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path, body):
        tok = self.tokenizer
        if path == "/tokenize":
            if set(body) != {"prompt", "add_special_tokens"}:
                return 400, {"error": {"message": f"bad tokenize body {sorted(body)}"}}
            return 200, {"tokens": tok.encode(body["prompt"], add_special_tokens=False), "count": 0}
        problem = shape_problem(body)
        if problem:
            return 400, {"error": {"message": problem}}
        ids = body.get("input_ids") or tok.encode(body["text"], add_special_tokens=False)
        meta = {"prompt_tokens": len(ids), "finish_reason": {"type": "stop"}}
        if body.get("return_logprob"):
            start = body["logprob_start_len"]
            meta["input_token_logprobs"] = [[TOKEN_LOGPROB, i, None] for i in ids[start:]]
            return 200, {"text": "", "output_ids": [], "meta_info": meta}
        params = body["sampling_params"]
        out = tok.encode(self.answer, add_special_tokens=False)[: params["max_new_tokens"]]
        out += params["stop_token_ids"][:1]  # the answer ends at the first stop id, which SGLang returns
        return 200, {"text": tok.decode(out, skip_special_tokens=True), "output_ids": out, "meta_info": meta}

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def sglang(smollm2_tokenizer):
    fake = FakeSGLang(smollm2_tokenizer)
    yield fake
    fake.close()


def sglang_config(tmp_path, model_dir, url, **served):
    entry = {"name": "sglang-smol", "backend": "served", "max_new_tokens": 8,
             "served": {"base_url": url, "engine": "sglang", "tokenizer": str(model_dir), "retries": 0, **served}}
    return write_config(tmp_path / "cfg.yaml", models=[entry], tasks=["passkey"], context_lengths=[128],
                        depths=[0.0, 1.0], samples=2, seed=7, output_dir=str(tmp_path / "run"))


def test_generate_with_token_ids_gives_answers_and_gold_logprobs(tmp_path, tiny_model_dir, sglang):
    path = sglang_config(tmp_path, tiny_model_dir, sglang.url)
    rows = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["skip_reason"] for r in rows]
    for row in rows:
        assert row["generated"] == " 12345" and row["model_revision"] == "sglang:HuggingFaceTB/SmolLM2-135M-Instruct"
        assert row["extra"]["served_prompt_tokens"] == row["prompt_tokens"]
        assert row["gold_logprob_sum"] == pytest.approx(TOKEN_LOGPROB * row["gold_tokens"])
    generate = [b for p, b in sglang.requests if p == "/generate"]
    answers = [b for b in generate if not b.get("return_logprob")]
    gold = [b for b in generate if b.get("return_logprob")]
    assert len(answers) == len(gold) == 4
    assert all(b["sampling_params"]["stop_token_ids"] for b in answers)  # the model's eos ids
    assert sorted(len(b["input_ids"]) for b in answers) == sorted(r["prompt_tokens"] for r in rows)
    assert sorted(b["logprob_start_len"] for b in gold) == sorted(r["prompt_tokens"] for r in rows)


def test_text_route_sends_text_to_generate(tmp_path, tiny_model_dir, sglang):
    path = sglang_config(tmp_path, tiny_model_dir, sglang.url, prompt="text")
    rows = records(run_eval(load_config(path), path, quiet=True, write_report=False).run_dir)
    assert {r["status"] for r in rows} == {"ok"}
    answers = [b for p, b in sglang.requests if p == "/generate" and not b.get("return_logprob")]
    assert len(answers) == 4 and all(isinstance(b["text"], str) and "input_ids" not in b for b in answers)


def test_the_fake_refuses_a_body_sglang_would_not_take():
    assert shape_problem({"prompt": [1, 2]}) == "unknown fields ['prompt']"
    assert "sampling_params" in shape_problem({"input_ids": [1], "sampling_params": {"max_tokens": 8}})
    assert "outside the prompt" in shape_problem({"input_ids": [1, 2], "sampling_params": {"temperature": 0,
                                                  "max_new_tokens": 1}, "return_logprob": True,
                                                  "logprob_start_len": 2})

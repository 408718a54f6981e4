"""ServedBackend through the runner on a llama-server look-alike: records, refusals, skips, resume, the key."""

from __future__ import annotations

import json

import pytest

from conftest import write_config
from evalkit.config.schema import load_config
from evalkit.errors import ConfigError, ServerError
from evalkit.run.backend_checks import check_backends
from evalkit.run.runner import run_eval
from run_fixtures import records
from served_fixtures import FakeServer, Script, answer_requests, forced_requests


@pytest.fixture
def server(smollm2_tokenizer):
    fake = FakeServer(Script(smollm2_tokenizer))
    yield fake
    fake.close()


def served_config(tmp_path, model_dir, url, **served):
    entry = {"name": "served-smol", "backend": "served", "max_new_tokens": 8,
             "served": {"base_url": url, "tokenizer": str(model_dir), "retries": 0, "timeout_s": 10.0, **served}}
    return write_config(tmp_path / "cfg.yaml", models=[entry], tasks=["passkey"], context_lengths=[128],
                        depths=[0.0, 0.5, 1.0], samples=2, seed=7, output_dir=str(tmp_path / "run"))


def run(path, **kw):
    return run_eval(load_config(path), path, quiet=True, write_report=False, **kw)


def test_records_hold_the_server_prompt_count_and_the_gold_logprob(tmp_path, tiny_model_dir, server):
    server.script.answer_logprob = None  # answers without log-probs: every gold token is forced (the fallback)
    summary = run(served_config(tmp_path, tiny_model_dir, server.url))
    rows = records(summary.run_dir)
    assert summary.planned == len(rows) == 6
    for row in rows:
        assert row["status"] == "ok"
        assert row["generated"] == " 12345"  # the fake answer's tokens (within the 8-token budget), decoded locally
        assert row["extra"]["served_prompt_tokens"] == row["prompt_tokens"]
        # one forced request per gold token, each -0.25 on the fake
        assert row["gold_logprob_sum"] == pytest.approx(-0.25 * row["gold_tokens"])
        assert row["gold_logprob_mean"] == pytest.approx(-0.25) and "gold_logprob_reason" not in row["extra"]
        assert row["model_revision"] == "llama.cpp:fake.gguf"
    sent = [body["prompt"] for body in answer_requests(server.script.requests)]
    assert all(isinstance(i, int) for prompt in sent for i in prompt)  # token ids, not text
    assert sorted(len(p) for p in sent) == sorted(r["prompt_tokens"] for r in rows)
    gold = forced_requests(server.script.requests)
    assert len(gold) == sum(r["gold_tokens"] for r in rows)
    assert all(b["n_predict"] == 1 and b["logit_bias"][0][1] >= 100 for b in gold)


def test_the_answer_gives_the_gold_logprobs_up_to_where_it_differs_and_forced_requests_the_rest(
        tmp_path, tiny_model_dir, server, smollm2_tokenizer):
    rows = records(run(served_config(tmp_path, tiny_model_dir, server.url)).run_dir)
    answer = smollm2_tokenizer.encode(server.script.answer, add_special_tokens=False)
    expected_forced = 0
    for row in rows:
        gold = smollm2_tokenizer.encode(" " + row["gold_answer"], add_special_tokens=False)
        assert row["gold_tokens"] == len(gold) and row["status"] == "ok"
        same = next(k for k in range(len(gold) + 1) if k == len(gold) or gold[k] != answer[k])
        assert same >= 1  # the fake's " 12345" and the pass key share at least the leading space
        # the agreeing steps' log-probs from the answer (-0.125 on the fake), the others forced (-0.25)
        assert row["gold_logprob_sum"] == pytest.approx(-0.125 * same - 0.25 * (len(gold) - same))
        expected_forced += len(gold) - same
    forced = forced_requests(server.script.requests)
    assert len(forced) == expected_forced < sum(r["gold_tokens"] for r in rows)
    asked = {b["n_probs"] for b in answer_requests(server.script.requests)}
    assert all(b["post_sampling_probs"] is False for b in answer_requests(server.script.requests))
    # llama-server's softmax sums in an order set by n_probs: forced requests ask the answer's count, so the
    # same logits give the same log-prob to the bit (another count rounds one float step apart)
    assert len(asked) == 1 and min(asked) >= 1 and {b["n_probs"] for b in forced} == asked


def test_an_engine_without_log_probs_records_null_with_the_reason(tmp_path, tiny_model_dir, server):
    server.script.token_logprob = None  # the reply has no completion_probabilities
    rows = records(run(served_config(tmp_path, tiny_model_dir, server.url)).run_dir)
    assert {r["status"] for r in rows} == {"ok"}
    for row in rows:
        assert row["gold_logprob_sum"] is None and row["gold_logprob_mean"] is None
        assert "no gold log-probs from the server" in row["extra"]["gold_logprob_reason"]
        assert "completion_probabilities" in row["extra"]["gold_logprob_reason"]


def test_a_disagreeing_tokenizer_is_refused_before_any_trial(tmp_path, tiny_model_dir, server):
    server.script.tokenize_offset = 1
    with pytest.raises(ServerError, match="served.tokenizer: the server tokenizes a probe text differently"):
        run(served_config(tmp_path, tiny_model_dir, server.url))
    assert not any(p == "/completion" for p, _, _ in server.script.requests)


def test_text_route_sends_text_checked_by_tokenize(tmp_path, tiny_model_dir, server):
    rows = records(run(served_config(tmp_path, tiny_model_dir, server.url, prompt="text")).run_dir)
    assert [r["status"] for r in rows] == ["ok"] * 6
    sent = [body["prompt"] for body in answer_requests(server.script.requests)]
    assert len(sent) == 6 and all(isinstance(p, str) for p in sent)
    checks = [b for p, _, b in server.script.requests if p == "/tokenize" and b["add_special"]]
    assert sorted(c["content"] for c in checks) == sorted(sent)  # each trial's text was tokenized as its prompt is


def test_text_route_skips_a_trial_the_engine_tokenizes_otherwise(tmp_path, tiny_model_dir, server):
    path = served_config(tmp_path, tiny_model_dir, server.url, prompt="text")
    server.script.tokenize_offset_text_prompts = 1  # the probe agrees, the trial texts do not
    rows = records(run(path).run_dir)
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(r["skip_reason"].startswith("text route: the engine tokenizes the prompt text to ") for r in rows)
    assert "first difference at id 0" in rows[0]["skip_reason"]
    assert answer_requests(server.script.requests) == []  # nothing was sent for completion


def test_a_server_that_saw_other_tokens_skips_the_trial(tmp_path, tiny_model_dir, server):
    server.script.prompt_token_delta = 1
    rows = records(run(served_config(tmp_path, tiny_model_dir, server.url)).run_dir)
    assert {r["status"] for r in rows} == {"skipped"}
    assert "token mismatch: the server processed" in rows[0]["skip_reason"]


def test_4xx_stops_the_run_with_the_server_message(tmp_path, tiny_model_dir, server):
    path = served_config(tmp_path, tiny_model_dir, server.url)
    run(path, limit=1)
    server.script.fail_path, server.script.fail_next = "/completion", [404]
    server.script.error_message = "model 'x' not found"
    with pytest.raises(ServerError, match=r"POST http://127.0.0.1:\d+/completion: the server answered HTTP 404: "
                                          "model 'x' not found$"):
        run(path)
    assert len(records(tmp_path / "run")) == 1  # the finished trial is kept, nothing else written


def test_dead_server_trials_are_skipped_and_retry_skipped_completes_the_plan(tmp_path, tiny_model_dir, server):
    path = served_config(tmp_path, tiny_model_dir, server.url)
    run(path, limit=2)  # two trials done, then the server "dies" for the rest
    server.script.fail_path, server.script.fail_next = "/completion", [503] * 4
    summary = run(path)
    rows = records(summary.run_dir)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(rows) == 6 and len(skipped) == 4
    assert all(r["skip_reason"].startswith("server error:") for r in skipped)
    summary = run(path, retry_skipped=True)  # the server is back
    rows = records(summary.run_dir)
    ids = [r["trial_id"] for r in rows if r["status"] == "ok"]
    assert len(ids) == len(set(ids)) == summary.planned == 6


def test_capture_is_refused_at_validation(tmp_path, tiny_model_dir, server):
    path = served_config(tmp_path, tiny_model_dir, server.url)
    data = json.loads(json.dumps(__import__("yaml").safe_load(path.read_text())))
    data["attention"] = {"capture": True}
    path = write_config(tmp_path / "cap.yaml", **data)
    with pytest.raises(ConfigError, match="attention.capture: backend 'served' .* cannot capture attention"):
        check_backends(load_config(path), path)


def test_the_key_never_reaches_the_run_directory(tmp_path, tiny_model_dir, server, monkeypatch):
    monkeypatch.setenv("EVALKIT_TEST_KEY", "sk-never-written-42")
    summary = run(served_config(tmp_path, tiny_model_dir, server.url, api_key_env="EVALKIT_TEST_KEY"))
    assert server.script.requests[-1][1]["Authorization"] == "Bearer sk-never-written-42"
    for file in summary.run_dir.rglob("*"):
        if file.is_file():
            assert b"sk-never-written-42" not in file.read_bytes(), file


def _group_depths(rows):
    """Depths of each reuse group (sample seed, length) in the order its records were written."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        groups.setdefault((row["seed"], row["context_length"]), []).append(row["depth"])
    return list(groups.values())


@pytest.mark.parametrize("workers, overlap", [(1, 1), (3, 2)])
def test_groups_run_concurrently_each_in_ascending_depth(tmp_path, tiny_model_dir, server, workers, overlap):
    server.script.delay_s = 0.2
    path = write_config(tmp_path / "cfg.yaml", models=[
        {"name": "served-smol", "backend": "served", "max_new_tokens": 8,
         "served": {"base_url": server.url, "tokenizer": str(tiny_model_dir), "max_concurrency": workers}}],
        tasks=["passkey"], context_lengths=[128, 160], depths=[0.0, 0.25, 0.5, 1.0], samples=2, seed=7,
        output_dir=str(tmp_path / "run"))
    rows = records(run(path).run_dir)
    assert len(rows) == 16 and {r["status"] for r in rows} == {"ok"}
    groups = _group_depths(rows)
    assert len(groups) == 4 and all(depths == [0.0, 0.25, 0.5, 1.0] for depths in groups)
    assert server.script.max_in_flight >= overlap and (workers > 1 or server.script.max_in_flight == 1)


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serve_starts_the_server_and_stops_it_at_the_end(tmp_path, tiny_model_dir):
    import sys

    import served_fixtures
    from served_fixtures import free_port

    port = free_port()
    command = [sys.executable, served_fixtures.__file__, str(port), str(tiny_model_dir)]
    path = served_config(tmp_path, tiny_model_dir, f"http://127.0.0.1:{port}", serve=command, serve_wait_s=120.0)
    rows = records(run(path).run_dir)
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert not _listening(port)  # stopped with the run


def test_a_serve_command_that_exits_is_one_line(tmp_path, tiny_model_dir, capsys):
    import sys

    from evalkit.cli import main
    from served_fixtures import free_port

    command = [sys.executable, "-c", "raise SystemExit(3)"]
    path = served_config(tmp_path, tiny_model_dir, f"http://127.0.0.1:{free_port()}", serve=command)
    assert main(["run", str(path), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err.strip()
    assert "served.serve: the server exited with code 3 before it was ready; see " in err and "\n" not in err


def test_a_server_still_loading_passes_validation_and_a_4xx_health_is_refused(tmp_path, tiny_model_dir, server,
                                                                               caplog):
    path = served_config(tmp_path, tiny_model_dir, server.url)
    server.script.fail_path, server.script.fail_next = "/health", [503]  # llama-server while it loads the model
    check_backends(load_config(path), path)  # it answers: run's retries wait for it
    assert "the server answers but is not ready: server error: GET" in caplog.text
    server.script.fail_next, server.script.error_message = [401], "invalid api key"
    with pytest.raises(ServerError, match=r"models\[0\].served.base_url: GET http://127.0.0.1:\d+/health: the server "
                                          "answered HTTP 401: invalid api key; check served.engine and served.api_key_env"):
        check_backends(load_config(path), path)
    assert not (tmp_path / "run").exists()


VOCAB = "not a token id of the tokenizer (0 to 49151)"
# issue 19 R2: one answer reply with a bad value -> that trial skipped, naming engine, field and value
BAD_ANSWERS = [
    ({"tokens": [-7, 1000000000]}, f"llama_cpp /completion: the reply's tokens[0] is -7, {VOCAB}"),
    ({"tokens": [9, 1000000000]}, f"llama_cpp /completion: the reply's tokens[1] is 1000000000, {VOCAB}"),
    ({"tokens": [49152]}, f"the reply's tokens[0] is 49152, {VOCAB}"),
    ({"tokens": ["12"]}, f"the reply's tokens[0] is '12', {VOCAB}"),
    ({"tokens": [True]}, f"the reply's tokens[0] is True, {VOCAB}"),
    ({"tokens": 5}, "the reply's tokens is 5, not a list of token ids"),
    ({"tokens": [9] * 50}, "the reply's tokens length is 50, not at most the 8 tokens asked for"),
    ({"tokens_evaluated": -1}, "the reply's tokens_evaluated is -1, not a count (an int >= 0)"),
    ({"tokens_evaluated": 1e300}, "the reply's tokens_evaluated is 1e+300, not a count"),
    ({"content": ["x"]}, "llama_cpp /completion: the reply's content is ['x'], not a string"),
    ({"stop_type": 7}, "the reply's stop_type is 7, not a string"),
    ({"completion_probabilities": [{"id": 9, "logprob": float("nan")}]},
     "the reply's completion_probabilities[0].logprob is nan, not a log-probability (a finite number <= 0)"),
    ({"completion_probabilities": [{"id": 9, "logprob": float("-inf")}]}, "completion_probabilities[0].logprob is -inf"),
    ({"completion_probabilities": [{"id": 9, "logprob": 3.5}]}, "completion_probabilities[0].logprob is 3.5, not a log"),
    ({"completion_probabilities": [{"id": 9, "logprob": "-1"}]}, "completion_probabilities[0].logprob is '-1', not a"),
    ({"completion_probabilities": [{"id": -1, "logprob": -1.0}]}, f"completion_probabilities[0].id is -1, {VOCAB}"),
    ({"completion_probabilities": [{"id": 9, "logprob": -1.0, "top_logprobs": [{"id": 10**12, "logprob": -2.0}]}]},
     f"completion_probabilities[0].top_logprobs[0].id is 1000000000000, {VOCAB}"),
]


@pytest.mark.parametrize("fields, reason", BAD_ANSWERS, ids=[r.split(": ", 1)[-1][:50] for _, r in BAD_ANSWERS])
def test_a_reply_with_a_bad_value_skips_that_trial_and_the_run_goes_on(tmp_path, tiny_model_dir, server, fields,
                                                                        reason):
    server.script.bad_answers = [fields]  # the first answer only
    summary = run(served_config(tmp_path, tiny_model_dir, server.url))
    rows = records(summary.run_dir)
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(rows) == summary.planned == 6 and len(skipped) == 1, [r["skip_reason"] for r in skipped]
    assert reason in skipped[0]["skip_reason"], skipped[0]["skip_reason"]
    assert {r["status"] for r in rows if r is not skipped[0]} == {"ok"}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 2.0, "x", None])
def test_a_bad_forced_gold_logprob_skips_the_trial_or_records_null(tmp_path, tiny_model_dir, server, value):
    server.script.answer_logprob, server.script.token_logprob = None, value  # every gold token forced
    rows = records(run(served_config(tmp_path, tiny_model_dir, server.url)).run_dir)
    assert len(rows) == 6
    if value is None:  # no log-prob at all: the engine cannot score the gold, the record says why (not a skip)
        assert {r["status"] for r in rows} == {"ok"} and all(r["gold_logprob_sum"] is None for r in rows)
        return
    assert {r["status"] for r in rows} == {"skipped"}
    assert all(f"llama_cpp /completion: the reply's completion_probabilities[0].logprob is {value!r}, not a "
               "log-probability" in r["skip_reason"] for r in rows), rows[0]["skip_reason"]


def test_out_of_range_ids_from_tokenize_at_load_are_one_line(tmp_path, tiny_model_dir, server, capsys):
    from evalkit.cli import main

    server.script.tokenize_offset = -10**6
    path = served_config(tmp_path, tiny_model_dir, server.url)
    assert main(["run", str(path), "--quiet", "--no-report"]) == 2
    err = capsys.readouterr().err
    (line,) = err.strip().splitlines()
    assert "served.tokenizer: the server could not tokenize the probe text: llama_cpp /tokenize: the reply's " \
           f"tokens[0] is -99" in line and VOCAB in line and "Traceback" not in err
    assert not (tmp_path / "run").exists()

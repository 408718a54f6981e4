"""The viewer's prompt tokens coloured by attention (evalkit/report/document/viewer_tokens.py), on a tiny run and
on a long hand-made one: token texts and float16 masses as saved, folding, escaping, and the page in Chromium."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from browser_fixtures import chromium, console_lines, needs_chromium, run_checker
from report_fixtures import HOSTILE_NEEDLE, make_record, write_header, write_records
from run_fixtures import records, tiny_config

from evalkit.config.schema import load_config
from evalkit.report.document.viewer import write_viewer
from evalkit.report.document.viewer_tokens import FOLD_TOKENS
from evalkit.run.runner import run_eval
from evalkit.store.format import attention_path, read_trial_attention, save_trial_attention
from evalkit.store.saved_prompts import read_saved_prompts
from evalkit.types import TrialAttention

TOKENS = {"capture": True, "decode_steps": 1, "bins": 4, "sink_tokens": 1, "tokens": True, "token_layers": [0, 1]}
NEEDLE_PIECES = ["<script>", "document", ".title", "='pwned'", "</script>", "The", " pass", " key", " is", " 12345."]
LONG = 30_000  # prompt tokens of the hand-made trial
LONG_SPANS = {"preamble": [0, 10], "context_before": [10, 15_000], "needle": [15_000, 15_010],
              "context_after": [15_010, 29_974], "question": [29_974, LONG]}
BG = re.compile(r'<span class="tok" data-pos="(\d+)"[^>]*style="background-color: rgba?\(213, 94, 0(?:, ([\d.]+))?\)')


def _payload(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="trial-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def _series(view: dict, index: int) -> np.ndarray:
    """One mass series over every shown token, in prompt order."""
    return np.array([m for s in view["segments"] for m in s["mass"][index]], dtype=np.float64)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("tokens")
    path = tiny_config(tmp, tiny_model_dir, save_prompts=True, attention=TOKENS, context_lengths=[128],
                       depths=[0.5], samples=1)
    run_dir = run_eval(load_config(path), path, quiet=True, write_report=False).run_dir
    (record,) = records(run_dir)
    return run_dir, record, write_viewer(run_dir, tmp / "viewer.html")


def test_a_tiny_run_embeds_its_token_texts_and_the_float16_masses_of_its_array(tiny_run):
    run_dir, record, page = tiny_run
    (trial,) = _payload(page.read_text(encoding="utf-8"))["trials"]
    view, saved = trial["token_view"], read_saved_prompts(run_dir)[record["trial_id"]]
    texts = [t for s in view["segments"] for t in s["texts"]]
    assert len(texts) == record["prompt_tokens"] == 128 and all(s["folded"] == 0 for s in view["segments"])
    assert texts == saved["token_texts"] and "".join(texts) == saved["text"]
    att = read_trial_attention(attention_path(run_dir, record["trial_id"]))
    assert view["series"] == ["mean over layers 0, 1", "layer 0", "layer 1"]
    for layer in (0, 1):
        assert np.array_equal(_series(view, 1 + layer).astype(np.float16), att.token_mass[layer, 0])
    mean = att.token_mass[:, 0].astype(np.float32).mean(0).astype(np.float16)
    assert np.array_equal(_series(view, 0).astype(np.float16), mean)
    needle = next(s for s in view["segments"] if s["region"] == "needle")
    start, end = record["regions"]["needle"]
    assert (needle["start"], len(needle["texts"])) == (start, end - start)
    assert [s["region"] for s in view["segments"]][:2] == ["sink", "preamble"] and view["sink"][0] > 0
    assert view["top"][0] == pytest.approx(float(mean[1:].astype(np.float64).max()))  # scale: off the sink
    assert "token_note" not in trial


@needs_chromium
def test_opening_the_tiny_trial_shows_coloured_token_spans_and_the_needle_tokens_marked(tiny_run):
    _, record, page = tiny_run
    dom, stderr = chromium(page.as_uri() + "#trial=" + record["trial_id"], "--dump-dom", "--virtual-time-budget=3000")
    assert console_lines(stderr) == []
    coloured = {int(pos) for pos, _ in BG.findall(dom)}
    assert coloured == set(range(1, 128))  # every token but the sink has a background from its mass
    assert dom.count('class="tok sink"') == 1 and any(a not in ("", "0.000") for _, a in BG.findall(dom))
    mark = re.search(r'<mark class="needle" title="needle">(.*?)</mark>', dom, re.S).group(1)
    start, end = record["regions"]["needle"]
    assert [int(p) for p in re.findall(r'data-pos="(\d+)"', mark)] == list(range(start, end))


def _long_attention() -> TrialAttention:
    """One layer pair of per-token masses over LONG tokens, and region masses that agree with them."""
    spans = [[0, 1], [1, 10], *(LONG_SPANS[n] for n in ("context_before", "needle", "context_after", "question")),
             [LONG, LONG], [10, 7_500], [7_500, 15_000], [15_000, 22_500], [22_500, 29_974]]
    rng = np.random.default_rng(1)
    tokens = rng.random((2, 1, LONG)).astype(np.float32)
    tokens /= tokens.sum(-1, keepdims=True)  # [layers, rows, keys]
    mass = np.stack([np.repeat(tokens[:, None, :, a:b].sum(-1), 3, axis=1) for a, b in spans], -1)
    names = ("sink", "preamble", "context_before", "needle", "context_after", "question", "generated",
             "bin_00", "bin_01", "bin_02", "bin_03")
    zeros = np.zeros((2, 3, 1), int)
    return TrialAttention(mass=mass, remainder=1 - mass[..., :7].sum(-1), argmax_position=zeros, argmax_token=zeros,
                          row_token=np.array([5]), row_in_needle=np.array([True]), region_names=names,
                          spans=np.array(spans), bins=4, prompt_tokens=LONG,
                          token_mass=tokens.astype(np.float16), token_layers=(0, 1))


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("long") / "run"
    write_header(run)
    rows = [make_record(trial_id="long", context_length=LONG, prompt_tokens=LONG, regions=LONG_SPANS,
                        needle=HOSTILE_NEEDLE, needle_token_start=15_000, needle_token_end=15_010),
            make_record(trial_id="untokened"), make_record(trial_id="unsaved")]
    write_records(run, rows)
    texts = (["<|im_start|>"] + [" sys"] * 9 + [" grass", " sky"] * 7_495 + NEEDLE_PIECES
             + [" water", " stone"] * 7_482 + [" What"] * 25 + ["?"])
    assert len(texts) == LONG
    lines = [{"trial_id": "long", "input_ids": list(range(LONG)), "regions": LONG_SPANS, "text": "".join(texts),
              "token_texts": texts},
             {"trial_id": "untokened", "input_ids": [1, 2], "regions": {}, "text": "a b"}]  # an older run's line
    (run / "prompts.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    save_trial_attention(run, "long", _long_attention())
    save_trial_attention(run, "untokened", _long_attention())
    return run


def test_a_long_prompt_is_folded_per_region_and_trials_without_tokens_say_why(long_run, tmp_path):
    page = write_viewer(long_run, tmp_path / "viewer.html").read_text(encoding="utf-8")
    assert len(page.encode()) < 90_000  # the saved token texts alone are about 200 kB
    trials = {t["id"]: t for t in _payload(page)["trials"]}
    segments = {s["region"]: s for s in trials["long"]["token_view"]["segments"]}
    before, after = segments["context_before"], segments["context_after"]
    assert (len(before["texts"]), before["head"], before["folded"]) == (2 * FOLD_TOKENS, FOLD_TOKENS, 14_990 - 400)
    assert after["folded"] == 14_964 - 2 * FOLD_TOKENS and segments["needle"]["texts"] == NEEDLE_PIECES
    att = _long_attention()
    layer1 = np.array(before["mass"][2], dtype=np.float64).astype(np.float16)
    kept = np.r_[10:10 + FOLD_TOKENS, 15_000 - FOLD_TOKENS:15_000]
    assert np.array_equal(layer1, att.token_mass[1, 0, kept])  # the kept tokens' own masses, head then tail
    assert trials["untokened"]["token_note"] == ("Tokens not coloured: no saved token texts (run with save_prompts: "
                                                 "true).")
    assert trials["unsaved"]["token_note"].startswith("Tokens not coloured: no per-token attention (run with "
                                                      "attention: {capture: true, tokens: true}) and no saved")
    assert "token_view" not in trials["untokened"]
    note = html.unescape(re.search(r'<p class="note" id="embedding-note">(.*?)</p>', page).group(1))
    assert ("Prompt tokens coloured by attention for 1 (the first 500 at most), each region longer than 400 tokens "
            "folded to its first and last 200.") in note


@needs_chromium
def test_the_long_trial_opens_folded_with_a_script_needle_as_text(long_run, tmp_path):
    page = write_viewer(long_run, tmp_path / "viewer.html")
    dom, stderr = chromium(page.as_uri() + "#trial=long", "--dump-dom", "--virtual-time-budget=3000")
    assert console_lines(stderr) == []  # the needle's script never ran (no CSP violation either)
    assert re.search(r"<title>([^<]*)</title>", dom).group(1) == "evalkit trial viewer"
    assert dom.count('<span class="tok') == 1 + 9 + 4 * FOLD_TOKENS + 10 + 26
    folds = re.findall(r'<span class="fold"> … ([\d,]+) tokens folded … </span>', dom)
    assert folds == ["14,590", "14,564"]
    mark = re.search(r'<mark class="needle" title="needle">(.*?)</mark>', dom, re.S).group(1)
    assert html.unescape(re.sub(r"<[^>]+>", "", mark)) == HOSTILE_NEEDLE
    assert '<span class="tok" data-pos="15000"' in mark and "&lt;script&gt;" in mark
    assert "<script>document" not in dom
    shown = {int(p) for p, _ in BG.findall(dom)}
    assert 15_000 - FOLD_TOKENS in shown and 15_000 - FOLD_TOKENS - 1 not in shown  # folded tokens are not on the page


# Injected by the test only (the CSP is removed for it): switch the colour series to layer 1.
SWITCH = """<script>(function () {
  var tok = document.querySelector('#detail .tok[data-pos="5"]');
  document.body.setAttribute("data-before", tok.title + "|" + tok.style.backgroundColor);
  var select = document.getElementById("token-layer");
  select.value = "2";
  select.dispatchEvent(new Event("change"));
  document.body.setAttribute("data-after", tok.title + "|" + tok.style.backgroundColor);
})();</script>"""


@needs_chromium
def test_the_layer_select_recolours_the_tokens_with_that_layers_mass(tiny_run, tmp_path):
    _, record, page = tiny_run
    text = page.read_text(encoding="utf-8")
    view = _payload(text)["trials"][0]["token_view"]
    body, dom = run_checker(text, SWITCH, tmp_path, "#trial=" + record["trial_id"])
    (before, before_bg), (after, after_bg) = (body[k].split("|") for k in ("data-before", "data-after"))
    for title, series in ((before, 0), (after, 2)):
        assert float(title.rsplit(": ", 1)[1]) == pytest.approx(_series(view, series)[5], rel=5e-3)
    assert before_bg != after_bg and after_bg.startswith("rgba(213, 94, 0")

"""The trial viewer (evalkit/report/document/viewer.py): folded prompts, escaping, filters and a click in Chromium."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pytest
from browser_fixtures import chromium, console_lines, needs_chromium, run_checker
from report_fixtures import HOSTILE_NEEDLE, HOSTILE_OUTPUT, make_record, write_header, write_records

from evalkit.cli import main
from evalkit.report.document.viewer import script_hash, write_viewer
from evalkit.report.document.viewer_assets import viewer_script
from evalkit.report.document.viewer_data import FOLD_CHARS
from evalkit.store.format import save_trial_attention
from evalkit.types import TrialAttention

HAYSTACK_WORDS = 30_000  # about 200k characters on each side of the needle
QUESTION = "What is the pass key?"
BINS = 4


def _records() -> list[dict]:
    records = []
    for i, (length, depth) in enumerate((a, b) for a in (1024, 2048) for b in (0.0, 0.5, 1.0)):
        for sample in range(2):
            right = not (length == 2048 and depth == 0.5)
            records.append(make_record(trial_id=f"t{i}-{sample}", context_length=length, depth=depth, sample=sample,
                                       correct=right, generated="12345" if right else "no idea"))
    hostile = records[8]  # 2048 tokens, 50% depth, wrong: the first row the "wrong" filter keeps
    records[8] = {**hostile, "needle": HOSTILE_NEEDLE, "generated": HOSTILE_OUTPUT}
    return records


def _attention(prompt_tokens: int = 1024) -> TrialAttention:
    """Two layers, three heads, one row; regions per the record's spans, then BINS haystack bins."""
    spans = [[0, 1], [1, 10], [10, 500], [500, 510], [510, 1000], [1000, 1024], [1024, 1024]]
    edges = np.linspace(10, 1000, BINS + 1).round().astype(int)
    spans += [[int(a), int(b)] for a, b in zip(edges[:-1], edges[1:])]
    rng = np.random.default_rng(0)
    tokens = rng.random((2, 3, 1, prompt_tokens)).astype(np.float32)
    tokens /= tokens.sum(-1, keepdims=True)  # [layers, heads, rows, keys]
    mass = np.stack([tokens[..., a:b].sum(-1) for a, b in spans], -1)  # [layers, heads, rows, regions]
    names = ("sink", "preamble", "context_before", "needle", "context_after", "question", "generated",
             *(f"bin_{i:02d}" for i in range(BINS)))
    return TrialAttention(mass=mass, remainder=1 - mass[..., :7].sum(-1), argmax_position=np.zeros((2, 3, 1), int),
                          argmax_token=np.zeros((2, 3, 1), int), row_token=np.array([5]), row_in_needle=np.array([True]),
                          region_names=names, spans=np.array(spans), bins=BINS, prompt_tokens=prompt_tokens,
                          token_mass=tokens.mean(1).astype(np.float16), token_layers=(0, 1))


@pytest.fixture(scope="module")
def viewer_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("viewer") / "run"
    write_header(run)
    records = _records()
    write_records(run, records)
    text = ("<|im_start|>system ok " + "grass sky " * HAYSTACK_WORDS + HOSTILE_NEEDLE + " water stone " * HAYSTACK_WORDS
            + QUESTION + " Answer:")
    (run / "prompts.jsonl").write_text(json.dumps({"trial_id": records[8]["trial_id"], "input_ids": [1, 2],
                                                   "regions": {}, "text": text}) + "\n", encoding="utf-8")
    save_trial_attention(run, records[0]["trial_id"], _attention())
    return run, records


def _payload(page: str) -> dict:
    raw = re.search(r'<script type="application/json" id="trial-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(raw)


def test_long_saved_prompts_are_folded_and_the_page_says_what_is_embedded(viewer_run, tmp_path):
    run, records = viewer_run
    page = write_viewer(run, tmp_path / "viewer.html").read_text(encoding="utf-8")
    assert len(page.encode()) < 150_000  # the saved prompt alone is over 600 kB
    trials = {t["id"]: t for t in _payload(page)["trials"]}
    hostile = trials[records[8]["trial_id"]]
    assert hostile["source"] == "saved"
    pieces = {p["region"]: p for p in hostile["pieces"]}
    assert [p["region"] for p in hostile["pieces"]] == ["before", "needle", "after", "question", "tail"]
    assert pieces["needle"]["text"] == HOSTILE_NEEDLE and pieces["needle"]["folded"] == 0
    before = pieces["before"]
    assert len(before["text"]) == len(before["tail"]) == FOLD_CHARS
    assert before["folded"] == len("<|im_start|>system ok " + "grass sky " * HAYSTACK_WORDS) - 2 * FOLD_CHARS
    other = trials[records[1]["trial_id"]]
    assert other["source"] == "records" and [p.get("tokens") for p in other["pieces"]] == [10, 490, None, 490, None]
    note = html.unescape(re.search(r'<p class="note" id="embedding-note">(.*?)</p>', page).group(1))
    assert note.startswith("12 trials embedded. 1 with the saved prompt text, each region longer than 800 characters "
                           "folded to its first and last 400; 11 rebuilt from the record")
    assert "attention captured for 1." in note


def test_record_text_stays_inert_and_only_the_viewer_script_may_run(viewer_run, tmp_path):
    run, _ = viewer_run
    page = write_viewer(run, tmp_path / "viewer.html").read_text(encoding="utf-8")
    assert "<script>document.title" not in page and "<img src=x" not in page
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert scripts == [viewer_script()] and f"script-src {script_hash(scripts[0])};" in page
    assert "default-src 'none'" in page and "http://" not in page and "https://" not in page


def test_attention_of_a_trial_is_summarised_from_its_arrays(viewer_run, tmp_path):
    run, records = viewer_run
    trials = {t["id"]: t for t in _payload(write_viewer(run, tmp_path / "v.html").read_text("utf-8"))["trials"]}
    attention = trials[records[0]["trial_id"]]["attention"]
    expected = _attention()
    assert attention["sink"] == pytest.approx(float(expected.mass[:, :, 0, 0].mean()), abs=1e-4)
    assert attention["bins"] == pytest.approx(expected.mass[:, :, 0, 7:].mean((0, 1)).tolist(), abs=1e-4)
    assert len(attention["bins_by_layer"]) == 2 and len(attention["top_heads"]) == 5
    needle = expected.mass[:, :, 0, 3]
    top = attention["top_heads"][0]
    assert (top["layer"], top["head"]) == np.unravel_index(np.argmax(needle), needle.shape)
    assert len(attention["tokens"]["cells"]) == 400 and attention["tokens"]["layers"] == [0, 1]
    assert sum(attention["tokens"]["cells"]) == pytest.approx(1.0, abs=2e-3)  # row 0 sums to one over the prompt
    assert "attention" not in trials[records[1]["trial_id"]]


@needs_chromium
def test_viewer_opens_without_errors_and_shows_a_hostile_needle_as_highlighted_text(viewer_run, tmp_path):
    run, records = viewer_run
    page = write_viewer(run, tmp_path / "viewer.html")
    dom, stderr = chromium(page.as_uri() + "#trial=" + records[8]["trial_id"], "--dump-dom",
                           "--virtual-time-budget=3000")
    assert console_lines(stderr) == []  # no CSP violation, no script error
    assert re.search(r"<title>([^<]*)</title>", dom).group(1) == "evalkit trial viewer"
    assert f'data-trial="{records[8]["trial_id"]}"' in dom
    assert ('<mark class="needle" title="needle">&lt;script&gt;document.title=\'pwned\'&lt;/script&gt;'
            "The pass key is 12345.</mark>") in dom
    assert "data-pwned" not in re.search(r"<body([^>]*)>", dom).group(1)
    assert "characters folded" in dom and "12 of 12 trials" in dom


# Injected by the test only (the CSP is removed for it): narrow the table with a filter, then click a row.
CLICK = """<script>(function () {
  var before = document.querySelectorAll("#trials tbody tr").length;
  var select = document.getElementById("filter-correct");
  select.value = "no";
  select.dispatchEvent(new Event("change"));
  var rows = document.querySelectorAll("#trials tbody tr");
  rows[0].click();
  var mark = document.querySelector("#detail mark.needle");
  document.body.setAttribute("data-before", String(before));
  document.body.setAttribute("data-after", String(document.querySelectorAll("#trials tbody tr").length));
  document.body.setAttribute("data-opened", document.getElementById("detail").getAttribute("data-trial"));
  document.body.setAttribute("data-needle", mark ? mark.textContent : "none");
  document.body.setAttribute("data-strip", String(document.querySelectorAll("#detail .strip div").length));
})();</script>"""


@needs_chromium
def test_a_filter_narrows_the_table_and_a_click_opens_the_trial_with_its_needle(viewer_run, tmp_path):
    run, records = viewer_run
    page = write_viewer(run, tmp_path / "viewer.html").read_text(encoding="utf-8")
    body, _ = run_checker(page, CLICK, tmp_path)
    wrong = [r for r in records if not r["correct"]]
    assert (body["data-before"], body["data-after"]) == ("12", str(len(wrong)))
    assert body["data-opened"] == wrong[0]["trial_id"] == records[8]["trial_id"]
    assert body["data-needle"] == HOSTILE_NEEDLE  # highlighted, and as text: the script in it never ran
    assert body["data-strip"] == "0" and "data-pwned" not in body  # no attention captured for this trial


@needs_chromium
def test_a_captured_trial_shows_its_attention_strips(viewer_run, tmp_path):
    run, records = viewer_run
    page = write_viewer(run, tmp_path / "viewer.html")
    dom, stderr = chromium(page.as_uri() + "#trial=" + records[0]["trial_id"], "--dump-dom",
                           "--virtual-time-budget=3000")
    assert console_lines(stderr) == []
    assert "Top retrieval heads of this trial" in dom and "Sink (first tokens), shown apart" in dom
    strips = re.findall(r'<div class="strip">(.*?)</div></div>', dom)
    assert [s.count("<div") for s in strips][:2] == [BINS, 400]  # haystack bins, then the per-token cells


def test_cli_view_writes_the_page_and_needs_out_for_several_runs(viewer_run, tmp_path, capsys):
    run, _ = viewer_run
    out = tmp_path / "page.html"
    assert main(["view", str(run), "--out", str(out)]) == 0
    assert out.is_file() and f"viewer: {out}" in capsys.readouterr().out
    assert main(["view", str(run), str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out FILE.html" in err

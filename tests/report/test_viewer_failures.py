"""The trial viewer's failure types and look-alikes (evalkit/report/document/viewer_distractors.py and the page):
the failure filter in headless Chromium, outlined distractors, escaping, old runs without the filter."""

from __future__ import annotations

import json
import re

import pytest
from browser_fixtures import chromium, console_lines, needs_chromium, run_checker
from failure_fixtures import HOSTILE_DISTRACTOR, MIX, NEEDLE, mix_records, records_with
from report_fixtures import write_grid_run, write_header, write_records
from test_viewer import _attention

from evalkit.report.document.viewer import write_viewer
from evalkit.store.format import save_trial_attention
from evalkit.report.document.viewer_distractors import cut_text, split_counts

QUESTION = "What is the pass key?"


@pytest.fixture(scope="module")
def failure_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("viewer-failures") / "run"
    write_header(run, models={m: "abc123" for m in MIX}, config={"models": list(MIX), "tasks": ["passkey"]})
    records = mix_records(hostile_first=True)
    write_records(run, records)
    hostile = records_with(records, "distractor")[0]  # its first look-alike's text is HOSTILE_DISTRACTOR
    text = ("<|im_start|>system ok " + "grass sky " * 50 + HOSTILE_DISTRACTOR + " grass sky " * 50 + NEEDLE
            + " water stone " * 60 + "The pass key is 77777." + " water " * 10 + QUESTION + " Answer:")
    (run / "prompts.jsonl").write_text(json.dumps({"trial_id": hostile["trial_id"], "input_ids": [1, 2],
                                                   "regions": {}, "text": text}) + "\n", encoding="utf-8")
    return run, records


def _payload(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="trial-data">(.*?)</script>', page, re.S).group(1))


def test_cut_text_and_split_counts_put_each_look_alike_in_its_place():
    marks = [{"index": 0, "text": "B", "start": 20, "end": 28}, {"index": 1, "text": "D", "start": 40, "end": 44}]
    assert cut_text("before", "aaBccDe", marks) == [("before", "aa", None), ("distractor", "B", 0),
                                                    ("before", "cc", None), ("distractor", "D", 1),
                                                    ("before", "e", None)]
    assert split_counts("context_before", [10, 50], marks) == [("context_before", 10, None), ("distractor", "B", 0),
                                                               ("context_before", 12, None), ("distractor", "D", 1),
                                                               ("context_before", 6, None)]
    assert split_counts("context_after", [60, 70], marks) == [("context_after", 10, None)]


def test_each_trial_carries_its_failure_type_and_its_look_alikes_as_pieces(failure_run, tmp_path):
    run, records = failure_run
    page = write_viewer(run, tmp_path / "viewer.html").read_text("utf-8")
    data = _payload(page)
    assert data["filters"][-1] == "failure" and 'id="filter-failure"' in page and "<th>why</th>" in page
    trials = {t["id"]: t for t in data["trials"]}
    hostile = trials[records_with(records, "distractor")[0]["trial_id"]]
    assert (hostile["failure"], hostile["failure_distractor"], hostile["source"]) == ("distractor", 0, "saved")
    regions = [(p["region"], p.get("distractor")) for p in hostile["pieces"]]
    assert regions == [("before", None), ("distractor", 0), ("before", None), ("needle", None), ("after", None),
                       ("distractor", 1), ("after", None), ("question", None), ("tail", None)]
    assert hostile["pieces"][1]["text"] == HOSTILE_DISTRACTOR
    other = trials[records_with(records, "absent")[0]["trial_id"]]  # rebuilt from the record's token spans
    assert [(p["region"], p.get("tokens"), p.get("distractor")) for p in other["pieces"]] == [
        ("preamble", 10, None), ("context_before", 90, None), ("distractor", None, 0), ("context_before", 392, None),
        ("needle", None, None), ("context_after", 290, None), ("distractor", None, 1), ("context_after", 192, None),
        ("question", None, None)]
    assert "<script>document.title" not in page  # JSON keeps every < escaped


def test_a_run_without_failure_types_has_no_failure_filter(tmp_path):
    run = write_grid_run(tmp_path / "old")
    page = write_viewer(run, tmp_path / "viewer.html").read_text("utf-8")
    data = _payload(page)
    assert data["filters"] == ["model", "task", "length", "depth", "layout", "correct"]
    assert 'id="filter-failure"' not in page and "<th>why</th>" not in page
    assert not any("failure" in t or "distractors" in t for t in data["trials"])


# Injected by the test only (the CSP is removed for it): filter by failure type, then open the first row.
FILTER = """<script>(function () {
  var select = document.getElementById("filter-failure");
  var options = Array.prototype.map.call(select.options, function (o) { return o.value; }).join(",");
  select.value = "distractor";
  select.dispatchEvent(new Event("change"));
  var rows = document.querySelectorAll("#trials tbody tr");
  var why = Array.prototype.map.call(rows, function (r) { return r.querySelector("td.why").textContent; });
  rows[0].click();
  var looks = document.querySelectorAll("#detail mark.distractor");
  var answered = document.querySelector("#detail mark.distractor.answered");
  document.body.setAttribute("data-options", options);
  document.body.setAttribute("data-rows", String(rows.length));
  document.body.setAttribute("data-why", why.filter(function (w, i) { return why.indexOf(w) === i; }).join(","));
  document.body.setAttribute("data-looks", String(looks.length));
  document.body.setAttribute("data-answered", answered ? answered.textContent : "none");
  document.body.setAttribute("data-title", answered ? answered.title : "none");
  var facts = document.querySelectorAll("#detail dl.facts dt");
  document.body.setAttribute("data-facts",
    Array.prototype.map.call(facts, function (d) { return d.textContent; }).join(","));
})();</script>"""


@needs_chromium
def test_the_failure_filter_narrows_the_table_and_the_answered_look_alike_is_outlined(failure_run, tmp_path):
    run, records = failure_run
    page = write_viewer(run, tmp_path / "viewer.html").read_text(encoding="utf-8")
    body, _ = run_checker(page, FILTER, tmp_path)
    assert body["data-options"] == ",absent,correct,distractor,format"
    assert body["data-rows"] == str(len(records_with(records, "distractor"))) == "20"
    assert body["data-why"] == "distractor"
    assert body["data-looks"] == "2"  # both look-alikes of the saved prompt outlined
    assert body["data-answered"] == HOSTILE_DISTRACTOR  # as text: its script never ran
    assert body["data-title"] == "look-alike 1 (value 99999), answered"
    assert "failure type" in body["data-facts"] and "look-alikes" in body["data-facts"]
    assert "data-pwned" not in body


@needs_chromium
def test_the_viewer_with_failures_opens_under_its_policy_without_errors(failure_run, tmp_path):
    run, records = failure_run
    page = write_viewer(run, tmp_path / "viewer.html")
    trial = records_with(records, "distractor")[0]["trial_id"]
    dom, stderr = chromium(page.as_uri() + "#failure=distractor&trial=" + trial, "--dump-dom",
                           "--virtual-time-budget=3000")
    assert console_lines(stderr) == []
    assert f'data-trial="{trial}"' in dom and "20 of 60 trials" not in dom and "20 of 180 trials" in dom
    assert '<mark class="distractor answered" title="look-alike 1 (value 99999), answered"' in dom


@needs_chromium
def test_look_alike_tokens_are_outlined_in_the_attention_coloured_prompt(tmp_path):
    run = tmp_path / "run"
    write_header(run, models={m: "abc123" for m in MIX}, config={"models": list(MIX), "tasks": ["passkey"]})
    records = mix_records()
    write_records(run, records)
    trial = records_with(records, "distractor")[0]["trial_id"]
    save_trial_attention(run, trial, _attention())  # 1,024 prompt tokens; look-alikes at tokens 100-108, 800-808
    (run / "prompts.jsonl").write_text(json.dumps({"trial_id": trial, "input_ids": [1] * 1024, "regions": {},
                                                   "text": "x", "token_texts": [f"t{i} " for i in range(1024)]}) + "\n",
                                       encoding="utf-8")
    page = write_viewer(run, tmp_path / "viewer.html")
    dom, stderr = chromium(page.as_uri() + "#trial=" + trial, "--dump-dom", "--virtual-time-budget=3000")
    assert console_lines(stderr) == []
    answered = re.findall(r'<span class="tok look answered"[^>]*data-pos="(\d+)"', dom)
    other = re.findall(r'<span class="tok look"[^>]*data-pos="(\d+)"', dom)
    assert [int(p) for p in answered] == list(range(100, 108)) and [int(p) for p in other] == list(range(800, 808))

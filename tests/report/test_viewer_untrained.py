"""The trial viewer names an untrained control (``init: random``) and greys its right/wrong: chance, not retrieval."""

from __future__ import annotations

import json
import re

from browser_fixtures import needs_chromium, run_checker
from report_fixtures import make_record, write_header, write_records

from evalkit.report.data.untrained import UNTRAINED_NOTE
from evalkit.report.document.viewer import write_viewer

TRAINED, CONTROL = "tiny-llama", "tiny-llama-random-0"


def _run(tmp_path):
    run = tmp_path / "run"
    facts = {TRAINED: {"chat_template_sha256": None, "init": "pretrained"},
             CONTROL: {"chat_template_sha256": None, "init": "random", "init_seed": 0}}
    write_header(run, models={TRAINED: "abc123", CONTROL: "abc123"}, model_facts=facts,
                 config={"models": [TRAINED, CONTROL], "tasks": ["passkey"]})
    records = [make_record(trial_id=f"{model}-{sample}", model=model, sample=sample, correct=sample == 0,
                           generated="12345" if sample == 0 else "no idea")
               for model in (TRAINED, CONTROL) for sample in range(2)]
    write_records(run, records)
    return run


def _payload(page: str) -> dict:
    text = re.search(r'<script type="application/json" id="trial-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(text)


def test_each_trial_says_whether_its_model_is_an_untrained_control(tmp_path):
    page = write_viewer(_run(tmp_path), tmp_path / "viewer.html").read_text("utf-8")
    data = _payload(page)
    assert {t["model"]: t["untrained"] for t in data["trials"]} == {TRAINED: False, CONTROL: True}
    assert data["untrained_note"] == UNTRAINED_NOTE


def test_a_run_from_before_init_names_no_control(tmp_path):
    run = tmp_path / "old"
    write_header(run)
    write_records(run, [make_record(trial_id="t0")])
    data = _payload(write_viewer(run, tmp_path / "viewer.html").read_text("utf-8"))
    assert [t["untrained"] for t in data["trials"]] == [False]


# Injected by the test only (the CSP is removed for it): read the table's cells, then open the control's right trial.
READ = """<script>(function () {
  var rows = document.querySelectorAll("#trials tbody tr");
  var cells = Array.prototype.map.call(rows, function (r) {
    var td = r.querySelectorAll("td");
    return td[0].textContent + "|" + td[5].className + "|" + td[5].textContent + "|" + (td[5].title || "");
  });
  document.body.setAttribute("data-cells", cells.join(";"));
  var select = document.getElementById("filter-model");
  document.body.setAttribute("data-models",
    Array.prototype.map.call(select.options, function (o) { return o.value; }).join(","));
  rows[2].click();
  var facts = document.querySelectorAll("#detail dl.facts dd");
  document.body.setAttribute("data-facts",
    Array.prototype.map.call(facts, function (d) { return d.textContent; }).join(";"));
})();</script>"""


@needs_chromium
def test_the_page_names_the_control_and_greys_its_right_and_wrong(tmp_path):
    page = write_viewer(_run(tmp_path), tmp_path / "viewer.html").read_text("utf-8")
    body, _ = run_checker(page, READ, tmp_path)
    label = f"{CONTROL} (untrained control)"
    assert body["data-cells"].split(";") == [
        f"{TRAINED}|ok|✓|", f"{TRAINED}|bad|✗|", f"{label}|muted|✓|{UNTRAINED_NOTE}", f"{label}|muted|✗|{UNTRAINED_NOTE}"]
    assert body["data-models"] == f",{TRAINED},{label}"
    facts = body["data-facts"].split(";")
    assert facts[0] == label and f"yes ({UNTRAINED_NOTE})" in facts

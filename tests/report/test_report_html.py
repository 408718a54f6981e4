"""report.html: self-contained, escaped, opened in headless Chromium; comparison sections; `evalkit report`."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pandas as pd
import pytest
from report_fixtures import (
    GRID,
    HOSTILE_NEEDLE,
    HOSTILE_OUTPUT,
    grid_records,
    write_demo_runs,
    write_grid_run,
    write_header,
    write_records,
)

from browser_fixtures import chromium, console_lines, needs_chromium

from evalkit.cli import main
from evalkit.report import write_report
from evalkit.report.document.html import CONTENT_SECURITY_POLICY
from evalkit.report.render import TITLE

# Injected by the test only (the report itself carries no script): marks the body once every image decoded.
IMAGE_CHECK = """<script>window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.setAttribute("data-image-count", String(images.length));
  document.body.setAttribute("data-images-ok", String(images.every(function (i) {
    return i.complete && i.naturalWidth > 0; })));
});</script>"""


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory):
    """The two-model demo report (hostile needle and output, controls, trust_remote_code on)."""
    base = tmp_path_factory.mktemp("demo")
    return write_report(write_demo_runs(base / "runs"), base / "out")


# ---------------------------------------------------------------------------- static checks


def test_html_is_self_contained_and_script_free(demo_report):
    text = demo_report.report_html.read_text(encoding="utf-8")
    assert f'content="{CONTENT_SECURITY_POLICY}"' in text and "script-src" not in CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY
    assert "<script" not in text.lower()  # the report runs no code at all
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", text, flags=re.I)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    sources = re.findall(r'<img src="([^"]+)"', text)
    pngs = [p for p in demo_report.charts if p.suffix == ".png"]
    assert len(sources) == len(pngs) == 9  # 2 x (safety strip, heatmap, curves) + by length, by depth, difference
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"


def test_text_from_records_is_escaped_in_html_and_markdown(demo_report):
    text = demo_report.report_html.read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;/script&gt;The pass key is 12345." in text
    assert "&lt;img src=x onerror=&quot;document.body.setAttribute(" in text
    assert HOSTILE_NEEDLE not in text and "<img src=x" not in text
    markdown = demo_report.report_md.read_text(encoding="utf-8")
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;" in markdown and "<script" not in markdown
    assert HOSTILE_OUTPUT not in markdown


def test_html_has_every_section_of_a_comparison_report(demo_report):
    text = demo_report.report_html.read_text(encoding="utf-8")
    anchors = ("runs", "comparison", "positions", "effective-length", "controls", "results", "examples", "glossary")
    for anchor in anchors:
        assert f'id="{anchor}"' in text and f'href="#{anchor}"' in text
    # the demo's first samples are the right ones at every depth, so a band's interval counts its 20 samples, not
    # its 60 trials (as 60 independent trials: 11–30% and 71–93%)
    assert "Facts placed between 40% and 60% depth at 8,192 tokens are found 18% of the time (95% CI 8–36%)" in text
    assert "vs 85% at the start (0–10% depth, 95% CI 69–93%)." in text
    # 154/180 = 85.56% fails the 85.6% threshold: shown with the decimals that make that visible
    assert "Effective context length: 1,024 tokens" in text and "85.56% at 2,048 tokens" in text
    assert "trust_remote_code was ON</strong> in run qwen-run for <code>Qwen/Qwen2.5-0.5B-Instruct</code>" in text
    assert "5% correct without the needle (closed book, 95% CI 1–24%, n=20)" in text
    assert text.index('class="summary"') < text.index('id="runs"')  # the summary comes first


# ---------------------------------------------------------------------------- in a browser


@needs_chromium
def test_report_opens_in_chromium_without_errors_and_shows_the_needle_as_text(demo_report, tmp_path):
    page = demo_report.report_html
    dom, stderr = chromium(page.as_uri(), "--dump-dom")
    assert console_lines(stderr) == []  # no CSP violation, no failed load, no script error
    assert re.search(r"<title>([^<]*)</title>", dom).group(1) == TITLE  # the hostile needle did not retitle
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt;The pass key is 12345." in dom  # rendered as text
    assert "data-pwned" not in re.search(r"<body([^>]*)>", dom).group(1)  # the onerror handler never ran

    # Without the CSP and with a checker script: escaping alone must keep the hostile text inert,
    # and every embedded chart must decode.
    checked = tmp_path / "checked.html"
    html = page.read_text(encoding="utf-8")
    html = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", html)
    checked.write_text(html.replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    dom, stderr = chromium(checked.as_uri(), "--dump-dom", "--virtual-time-budget=5000")
    assert console_lines(stderr) == []
    body = re.search(r"<body([^>]*)>", dom).group(1)
    assert 'data-images-ok="true"' in body and 'data-image-count="9"' in body
    assert "data-pwned" not in body and re.search(r"<title>([^<]*)</title>", dom).group(1) == TITLE

    shot = tmp_path / "report.png"
    chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 50_000


# ---------------------------------------------------------------------------- comparisons and the CLI


def test_two_runs_of_one_model_produce_the_comparison_section(tmp_path):
    run_a = write_grid_run(tmp_path / "runs" / "baseline")
    run_b = tmp_path / "runs" / "retry"
    write_header(run_b)
    write_records(run_b, grid_records(grid={**GRID, (2048, 0.5): (10, 10)}))
    paths = write_report([run_a, run_b], tmp_path / "out")
    names = {p.name for p in paths.files}
    assert {"compare_by_length_passkey.png", "compare_by_depth_passkey.png", "comparison.csv",
            "difference_org-tiny-model-retry_passkey.png", "length_comparison.csv"} <= names
    assert {"heatmap_org-tiny-model-baseline_passkey.png", "heatmap_org-tiny-model-retry_passkey.png"} <= names
    markdown = paths.report_md.read_text(encoding="utf-8")
    assert "## Comparison" in markdown and "labelled with the directory's name" in markdown
    assert ("| org/tiny-model · retry | Over all depths at 2,048 tokens, org/tiny-model · retry finds 97% vs 77% for "
            "org/tiny-model · baseline: +20 pts, 95% CI +2 to +38. |") in markdown  # the summary table's row
    html = paths.report_html.read_text(encoding="utf-8")
    assert 'id="comparison"' in html and html.count("<img ") == 8  # one safety strip: the first variant's
    cells = pd.read_csv(tmp_path / "out" / "comparison.csv")
    middle = cells[(cells["context_length"] == 2048) & (cells["depth"] == 0.5)]
    assert middle["difference"].item() == pytest.approx(0.6)


def test_single_run_report_has_no_comparison_section(tmp_path):
    paths = write_report(write_grid_run(tmp_path / "run"), tmp_path / "out")
    assert "## Comparison" not in paths.report_md.read_text(encoding="utf-8")
    assert 'id="comparison"' not in paths.report_html.read_text(encoding="utf-8")
    assert not any(p.name.startswith(("compare_", "difference_")) for p in paths.charts)


def test_parquet_tables_are_written_when_pyarrow_is_available(tmp_path, monkeypatch):
    import evalkit.report.render as render

    written = []
    monkeypatch.setattr(render, "parquet_available", lambda: True)
    def fake_to_parquet(self, path, index=True):
        written.append(Path(path).name)
        Path(path).write_bytes(b"PAR1")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", fake_to_parquet)
    paths = write_report(write_grid_run(tmp_path / "run"), tmp_path / "out")
    assert written == ["summary.parquet", "position_indices.parquet", "depth_bands.parquet", "effective_length.parquet"]
    assert {p.name for p in paths.tables} >= set(written)


def test_cli_report_threshold_option(tmp_path, capsys):
    runs = [write_grid_run(tmp_path / "a"), write_grid_run(tmp_path / "b", model="other/model")]
    out = tmp_path / "out"
    assert main(["report", str(runs[0]), str(runs[1]), "--out", str(out), "--threshold", "95%"]) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out
    effective = pd.read_csv(out / "effective_length.csv")
    assert set(effective["threshold"]) == {0.95}
    assert list(effective["effective_length"]) == [1024, 1024]  # 96.7% at 1024, 76.7% at 2048
    assert "at or above 95% (set with --threshold; RULER uses 85.6%)" in (out / "report.md").read_text(encoding="utf-8")

    bad = tmp_path / "bad"
    assert main(["report", str(runs[0]), "--out", str(bad), "--threshold", "90"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "error: --threshold: '90' is not in (0, 1] or (0%, 100%]; did you mean 90%?"
    assert not bad.exists()


def test_write_report_threshold_is_validated(tmp_path):
    with pytest.raises(ValueError, match="did you mean 0.9"):
        write_report(write_grid_run(tmp_path / "run"), tmp_path / "out", threshold=90)
    assert not (tmp_path / "out").exists()



def test_markdown_links_and_images_from_records_do_not_render(tmp_path):
    """D3: a needle, answer, output or model name holding Markdown links or images stays plain text."""
    image = "![px](http://evil.example/p.png)"
    link = "[click me](https://evil.example/x)"
    model = "[m](http://evil.example/m)"
    run = tmp_path / "run"
    write_header(run, models={model: "abc"})
    records = grid_records(model=model, grid={(1024, 0.0): (1, 2), (1024, 1.0): (0, 2)})
    records = [{**r, "needle": f"The pass key is {image}.", "gold_answer": image, "generated": f"{link} <{link}>"}
               for r in records]
    write_records(run, records)
    paths = write_report(run, tmp_path / "out")
    for path in (paths.report_md, paths.summary_md):
        prose = re.sub(r"`[^`\n]*`", "", path.read_text(encoding="utf-8"))  # code spans show text literally
        assert "Example trials" in prose or path == paths.summary_md
        # no link or image can form: every bracket from a record is escaped, bare URLs are broken up
        assert not re.search(r"(?<!\\)\[[^\]]*(?<!\\)\]\(http", prose), path.name
        assert not re.search(r"(?<![\\])https?://", prose), path.name
        assert "evil.example" in prose  # still shown, as text
    assert "!\\[px\\](http\\://evil.example/p.png)" in paths.report_md.read_text(encoding="utf-8")

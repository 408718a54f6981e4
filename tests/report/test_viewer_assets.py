"""The viewer's stylesheet and script are package files (evalkit/report/document/assets/), inlined as they are."""

from __future__ import annotations

import importlib.resources
import re

from evalkit.report.document.viewer import script_hash, viewer_html
from evalkit.report.document.viewer_assets import viewer_css, viewer_script

ASSETS = importlib.resources.files("evalkit.report.document") / "assets"


def test_the_assets_load_from_package_data_and_are_not_empty():
    for name, read in (("viewer.css", viewer_css), ("viewer.js", viewer_script)):
        text = read()
        assert text == (ASSETS / name).read_text(encoding="utf-8")
        assert len(text.strip()) > 1000, name
    assert viewer_script().lstrip().startswith("(function ()") and ":root" in viewer_css()


def test_the_page_inlines_both_files_verbatim_and_allows_exactly_that_script():
    page = viewer_html([], "0 trials embedded.", ["run"])
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.S)
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert style == viewer_css() and scripts == [viewer_script()]
    # the layout the page had when the assets were Python strings: each opens on a new line
    assert f"<style>{viewer_css()}</style>\n</head>" in page and f"<script>{viewer_script()}</script>\n</body>" in page
    assert f"script-src {script_hash(viewer_script())};" in page


def test_an_edited_script_gets_its_own_hash_in_the_policy(monkeypatch):
    from evalkit.report.document import viewer

    monkeypatch.setattr(viewer, "viewer_script", lambda: "\nconsole.log(1);\n")
    page = viewer_html([], "note", ["run"])
    assert f"script-src {script_hash(chr(10) + 'console.log(1);' + chr(10))};" in page
    assert "<script>\nconsole.log(1);\n</script>" in page

"""Headless Chromium for HTML tests: skip cleanly where it is not installed."""

from __future__ import annotations

import html
import re
import subprocess
import tempfile
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="headless Chromium not installed at /usr/bin/chromium (apt-get install chromium chromium-driver)",
)


def chromium(url: str, *extra: str) -> tuple[str, str]:
    """Run headless Chromium on ``url``; return (stdout, stderr). Console messages go to stderr."""
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--hide-scrollbars", *extra, url],
            capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, result.stderr


def console_lines(stderr: str) -> list[str]:
    """The page's console messages (errors, CSP violations) among Chromium's log lines."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


def run_checker(page_text: str, checker: str, workdir: Path, fragment: str = "") -> tuple[dict[str, str], str]:
    """Load ``page_text`` with its Content-Security-Policy removed and the test's ``checker`` script appended
    (it writes what it reads into ``data-*`` attributes of the body); return those attributes, HTML-unescaped,
    and the dumped DOM. The page's console must stay clean. ``fragment``: appended to the URL (``#trial=...``)."""
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page_text)
    checked = workdir / "checked.html"
    checked.write_text(page.replace("</body>", checker + "</body>"), encoding="utf-8")
    dom, stderr = chromium(checked.as_uri() + fragment, "--dump-dom", "--virtual-time-budget=3000")
    assert console_lines(stderr) == []
    body_tag = re.search(r"<body([^>]*)>", dom).group(1)
    return {k: html.unescape(v) for k, v in re.findall(r'(data-[a-z]+)="([^"]*)"', body_tag)}, dom

"""Headless Chromium for HTML tests: skip cleanly where it is not installed."""

from __future__ import annotations

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

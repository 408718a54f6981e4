"""The trial viewer's CSS and script, read from the package's ``assets/`` (``viewer.py`` inlines both in the page,
which loads nothing else).

``assets/viewer.css`` and ``assets/viewer.js`` are package data (``[tool.setuptools.package-data]`` in
pyproject.toml), read through ``importlib.resources`` by ``package_data.viewer_asset_text``: a checkout and an
installed wheel read the same files.
Each file is the exact text inlined, its blank first line included; the script's hash in the page's
Content-Security-Policy is taken over the text as read, so an edit to the file needs no other change.

The script reads the trials from a ``<script type="application/json">`` block and builds every element with
``textContent``, never ``innerHTML``, so a needle such as ``<script>...`` shows as text (token texts too: each
token is a ``<span>`` whose text is set as text and whose background shows its attention mass). Filters and the
opened trial can also be set from the URL fragment: ``viewer.html#model=m&correct=no&trial=<id>``.
Where records carry failure types (``viewer_distractors.py``) the page adds a failure-type filter and a "why"
column, names the type of an opened trial, and outlines each planted look-alike in its prompt (dashed; solid for
the one the model answered), in the saved text, the record's rebuilt pieces and the attention-coloured tokens.
"""

from __future__ import annotations

from evalkit.package_data import viewer_asset_text

CSS_FILE, SCRIPT_FILE = "viewer.css", "viewer.js"


def viewer_css() -> str:
    """The viewer page's stylesheet (inlined in its ``<style>``)."""
    return viewer_asset_text(CSS_FILE)


def viewer_script() -> str:
    """The viewer page's one script (inlined in its ``<script>``, allowed by its hash)."""
    return viewer_asset_text(SCRIPT_FILE)

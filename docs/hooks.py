"""MkDocs hook: the committed example reports' pictures and HTML pages, served under ``reports/examples/``.

The pages link to ``reports/examples/NAME/...`` as the README does; this adds those files (not their Markdown,
which is a report, not a page of the site) from the repository's ``reports/examples/`` so the links and images
resolve and a missing one fails the strict build.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File, Files

SERVED_SUFFIXES = {".png", ".svg", ".html", ".csv"}


def on_files(files: Files, config) -> Files:
    """Add every served file of ``reports/examples/`` to the site at the same relative path."""
    examples = Path(config["docs_dir"]).resolve().parent / "reports" / "examples"
    for path in sorted(examples.rglob("*")):
        if path.is_file() and path.suffix in SERVED_SUFFIXES:
            src_uri = path.relative_to(examples.parents[1]).as_posix()
            files.append(File.generated(config, src_uri, abs_src_path=str(path)))
    return files

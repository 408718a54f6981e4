"""A small document model shared by ``report.md`` and ``report.html``, and its Markdown renderer.

Sections build a list of blocks once; each renderer escapes text for its own format, so text from
records (needles, model outputs, model names) is never pasted into markup unescaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from evalkit.report.analysis.tables import escape_markdown, layout_table


@dataclass(frozen=True)
class Code:
    """Inline code (names, hashes, paths)."""

    text: str


@dataclass(frozen=True)
class Strong:
    """Emphasised inline text."""

    text: str


@dataclass(frozen=True)
class Link:
    """A link to a file of the report folder (relative ``href``; never an external URL)."""

    text: str
    href: str


Inline = str | Code | Strong | Link
Text = str | tuple[Inline, ...]


@dataclass(frozen=True)
class Heading:
    """A section title; ``anchor`` gives it an id for the HTML table of contents."""

    level: int
    text: str
    anchor: str = ""


@dataclass(frozen=True)
class Para:
    """A paragraph; ``kind`` "note" or "warning" renders as a call-out."""

    text: Text
    kind: str = ""


@dataclass(frozen=True)
class Bullets:
    """A bullet list."""

    items: tuple[Text, ...]


@dataclass(frozen=True)
class Table:
    """A table of pre-formatted cells; ``numeric[i]`` right-aligns column i."""

    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()
    caption: str = ""
    wrap: bool = False  # long free text (model outputs): let cells wrap in HTML


@dataclass(frozen=True)
class Image:
    """A chart: the PNG is embedded in HTML and linked from Markdown (same folder)."""

    png: Path
    alt: str
    wide: bool = False


@dataclass(frozen=True)
class Details:
    """Content collapsed behind ``summary`` in HTML (shown inline in Markdown)."""

    summary: str
    blocks: tuple = field(default_factory=tuple)


Block = Heading | Para | Bullets | Table | Image | Details


def spans(text: Text) -> tuple[Inline, ...]:
    """``text`` as a tuple of inline pieces."""
    return (text,) if isinstance(text, str) else tuple(text)


# ---------------------------------------------------------------------------- Markdown


def md_escape(text: str) -> str:
    """Text safe in a Markdown table or paragraph: no tag, link, image or autolink renders; one line."""
    return escape_markdown(text)


def md_code(text: str) -> str:
    """``text`` as one CommonMark code span, shown literally whatever it holds (tags, backticks), on one line.

    The fence is one backtick longer than the longest backtick run inside, so no run inside can close it
    (``r``<img>``s`` would otherwise end a ````-fenced span and the tag render); a space pads text that
    starts or ends with a backtick (the renderer strips one space each side).
    """
    text = " ".join(text.split())  # a newline would end the paragraph or table row
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _md_inline(piece: Inline) -> str:
    if isinstance(piece, Code):
        return md_code(piece.text)
    if isinstance(piece, Strong):  # "** x**" is not emphasis: keep spaces outside the markers
        text = md_escape(piece.text)
        core = text.strip()
        return text[: len(text) - len(text.lstrip())] + f"**{core}**" + text[len(text.rstrip()):] if core else text
    if isinstance(piece, Link):
        return f"[{md_escape(piece.text)}]({piece.href})"
    return md_escape(piece)


def md_text(text: Text) -> str:
    """Markdown of a paragraph's inline pieces."""
    return "".join(_md_inline(p) for p in spans(text))


def md_table(table: Table) -> str:
    """A GitHub table with padded columns (numbers right-aligned)."""
    headers = [md_escape(h) for h in table.headers]
    columns = [[md_escape(row[i]) for row in table.rows] for i in range(len(headers))]
    numeric = list(table.numeric) or [False] * len(headers)
    return layout_table(headers, columns, numeric)


def to_markdown_doc(blocks: list[Block]) -> str:
    """Render ``blocks`` as Markdown."""
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + md_escape(block.text), ""]
        elif isinstance(block, Para):
            prefix = {"warning": "> **Warning:** ", "note": "> "}.get(block.kind, "")
            out += [prefix + md_text(block.text), ""]
        elif isinstance(block, Bullets):
            out += [f"- {md_text(item)}" for item in block.items] + [""]
        elif isinstance(block, Table):
            out += ([f"*{md_escape(block.caption)}*", ""] if block.caption else []) + [md_table(block)]
        elif isinstance(block, Image):
            out += [f"![{md_escape(block.alt)}]({block.png.name})", ""]
        elif isinstance(block, Details):
            out += [f"**{md_escape(block.summary)}**", "", to_markdown_doc(list(block.blocks))]
    return "\n".join(out).rstrip("\n") + "\n"

"""Render the report's document model as one self-contained HTML page.

Everything the page needs is inside it: CSS inline, charts as base64 PNG data URIs, no script and
no external URL. A Content-Security-Policy forbids scripts and any network load, so even text that
slipped through unescaped could not run; every text is escaped anyway (``html.escape``).
"""

from __future__ import annotations

import base64
import html
import struct
from pathlib import Path

from evalkit.report.document.blocks import (
    Block,
    Bullets,
    Code,
    Details,
    Heading,
    Image,
    Inline,
    Link,
    Para,
    Strong,
    Table,
    Text,
    spans,
)

# no scripts, no fetches: images only from data: URIs, styles only inline
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
_PNG_DISPLAY_DPI = 100.0  # charts are saved at 150 dpi; show them at 100 px per inch (crisp on HiDPI)
_SAVED_DPI = 150.0

CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --zebra: #f6f8fa; --accent: #0072b2;
        --warn-bg: #fff4e5; --warn-line: #d55e00; --note-bg: #eef6fc; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 64px; }
h1 { font-size: 1.7rem; margin: 0 0 .4rem; }
h2 { font-size: 1.3rem; margin: 2.2rem 0 .6rem; padding-bottom: .3rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.08rem; margin: 1.6rem 0 .4rem; }
p, ul { margin: .5rem 0 .8rem; }
li { margin: .2rem 0; }
code { font: .88em/1.3 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; background: var(--zebra);
       padding: .1em .3em; border-radius: 4px; overflow-wrap: anywhere; }
a { color: var(--accent); }
nav.toc { background: var(--zebra); border: 1px solid var(--line); border-radius: 6px; padding: .5rem 1rem;
          margin: 1rem 0; font-size: .92rem; }
nav.toc ol { margin: .2rem 0; padding-left: 1.3rem; columns: 2; }
.callout { padding: .6rem .9rem; border-radius: 6px; border-left: 4px solid var(--accent); background: var(--note-bg); }
.callout.warning { border-left-color: var(--warn-line); background: var(--warn-bg); }
.summary { font-size: 1.02rem; border: 1px solid var(--line); border-radius: 8px; padding: .4rem 1.2rem;
           background: #fbfcfd; }
figure { margin: .8rem 0 1.2rem; }
figure img { max-width: 100%; height: auto; display: block; border: 1px solid #eee; border-radius: 4px; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .2rem; }
.table-wrap { overflow-x: auto; margin: .5rem 0 1rem; }
table { border-collapse: collapse; font-size: .88rem; }
caption { caption-side: top; text-align: left; color: var(--fg); font-weight: 600; padding-bottom: .3rem; }
th, td { border: 1px solid var(--line); padding: .3rem .55rem; text-align: left; vertical-align: top; }
th { background: var(--zebra); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td { min-width: 4rem; }
table.wrap td { max-width: 28rem; overflow-wrap: anywhere; }
tbody tr:nth-child(even) td { background: #fbfbfc; }
details { margin: .4rem 0 1rem; }
summary { cursor: pointer; color: var(--accent); }
footer { color: var(--muted); font-size: .85rem; margin-top: 3rem; }
"""


def _text(text: Text) -> str:
    return "".join(_inline(piece) for piece in spans(text))


def _inline(piece: Inline) -> str:
    if isinstance(piece, Code):
        return f"<code>{html.escape(piece.text)}</code>"
    if isinstance(piece, Strong):
        return f"<strong>{html.escape(piece.text)}</strong>"
    if isinstance(piece, Link):
        return f'<a href="{html.escape(piece.href)}">{html.escape(piece.text)}</a>'
    return html.escape(piece)


def png_size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` in pixels from a PNG's IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def _image(block: Image) -> str:
    data = Path(block.png).read_bytes()
    width, height = png_size(data)
    scale = _PNG_DISPLAY_DPI / _SAVED_DPI
    uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    alt = html.escape(block.alt)
    return (f'<figure><img src="{uri}" alt="{alt}" width="{round(width * scale)}" '
            f'height="{round(height * scale)}"><figcaption>{alt} · <a href="{html.escape(block.png.name)}">PNG</a>'
            f' · <a href="{html.escape(block.png.with_suffix(".svg").name)}">SVG</a></figcaption></figure>')


def _table(block: Table) -> str:
    numeric = list(block.numeric) or [False] * len(block.headers)
    head = "".join(f'<th{" class=num" if num else ""} scope="col">{html.escape(h)}</th>'
                   for h, num in zip(block.headers, numeric))
    body = "".join(
        "<tr>"
        + "".join(f'<td{" class=num" if num else ""}>{html.escape(cell)}</td>' for cell, num in zip(row, numeric))
        + "</tr>" for row in block.rows
    )
    caption = f"<caption>{html.escape(block.caption)}</caption>" if block.caption else ""
    cls = ' class="wrap"' if block.wrap else ""
    return (f'<div class="table-wrap"><table{cls}>{caption}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")


def render_blocks(blocks: list[Block]) -> str:
    """HTML of ``blocks`` (no page shell)."""
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            anchor = f' id="{html.escape(block.anchor)}"' if block.anchor else ""
            out.append(f"<h{block.level}{anchor}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            cls = {"warning": ' class="callout warning"', "note": ' class="callout"'}.get(block.kind, "")
            out.append(f"<p{cls}>{_text(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_text(item)}</li>" for item in block.items)
            out.append(f"<ul>{items}</ul>")
        elif isinstance(block, Table):
            out.append(_table(block))
        elif isinstance(block, Image):
            out.append(_image(block))
        elif isinstance(block, Details):
            out.append(f"<details><summary>{html.escape(block.summary)}</summary>{render_blocks(list(block.blocks))}</details>")
    return "\n".join(out)


def _toc(blocks: list[Block]) -> str:
    entries = [b for b in blocks if isinstance(b, Heading) and b.level == 2 and b.anchor]
    if len(entries) < 2:
        return ""
    items = "".join(f'<li><a href="#{html.escape(b.anchor)}">{html.escape(b.text)}</a></li>' for b in entries)
    return f'<nav class="toc" aria-label="contents"><strong>Contents</strong><ol>{items}</ol></nav>'


def render_html(title: str, summary: list[Block], body: list[Block], footer: str = "") -> str:
    """A complete HTML page: ``title``, the boxed ``summary`` blocks, a contents list, then ``body``."""
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{CSS}</style>",
        "</head><body><main>",
        f"<h1>{html.escape(title)}</h1>",
        f'<section class="summary" aria-label="summary">{render_blocks(summary)}</section>',
        _toc(body),
        render_blocks(body),
        f"<footer>{html.escape(footer)}</footer>" if footer else "",
        "</main></body></html>",
        "",
    ])

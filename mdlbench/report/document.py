"""A report as a list of blocks, rendered to Markdown or to one self-contained HTML file (figures inlined).

Inline markup inside text is limited to ``code`` and **bold**, which both renderers understand.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]
    right: Sequence[bool] = ()  # per column: right-align (numbers)


@dataclass(frozen=True)
class Figure:
    path: str  # relative to the report folder
    caption: str


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Embed:
    """A self-contained HTML page (relative to the report folder): a link in Markdown, an inline frame in HTML."""

    path: str
    caption: str
    height_px: int = 640


Block = Heading | Para | Bullets | Table | Figure | Code | Embed


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Para):
            out.append(b.text)
        elif isinstance(b, Bullets):
            out.append("\n".join(f"- {item}" for item in b.items))
        elif isinstance(b, Table):
            right = list(b.right) or [False] * len(b.header)
            lines = ["| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                     "|" + "|".join("---:" if r else "---" for r in right) + "|"]
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in b.rows]
            out.append("\n".join(lines))
        elif isinstance(b, Figure):
            out.append(f"![{b.caption}]({b.path})\n\n*{b.caption}*")
        elif isinstance(b, Code):
            out.append(f"```\n{b.text}\n```")
        elif isinstance(b, Embed):
            out.append(f"[{b.caption}]({b.path})")
    return "\n\n".join(out) + "\n"


def _inline_html(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if len(p) >= 2 and p.startswith("`") and p.endswith("`"):
            out.append(f"<code>{html.escape(p[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(p)))
    return "".join(out)


# The page is at most 1100 px wide; a table wider than that scrolls inside its own box (div.scroll) with its first
# column kept in view, so the page itself never scrolls sideways and no cell is clipped.
_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}p,li,figcaption{overflow-wrap:anywhere}
div.scroll{overflow-x:auto;max-width:100%;margin:1em 0}table{border-collapse:collapse;font-size:.8em}
th,td{border:1px solid #ccc;padding:.2em .4em}th{background:#f3f3f3}td{background:#fff}
th:first-child,td:first-child{position:sticky;left:0;z-index:1}
td.r{text-align:right;font-variant-numeric:tabular-nums}td code{white-space:nowrap}
code{background:#f5f5f5;padding:0 .2em}pre{background:#f5f5f5;padding:.6em;overflow-x:auto}figure{margin:1em 0}
img{max-width:100%}figcaption{font-style:italic;font-size:.9em}"""


def to_html(blocks: Sequence[Block], base_dir: Path, title: str) -> str:
    """One HTML page; every figure is read from ``base_dir`` and inlined as a base64 data URI."""
    out = [f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{_inline_html(b.text)}</h{b.level}>")
        elif isinstance(b, Para):
            out.append(f"<p>{_inline_html(b.text)}</p>")
        elif isinstance(b, Bullets):
            out.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Table):
            right = list(b.right) or [False] * len(b.header)
            head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
            body = "".join("<tr>" + "".join(f"{td}{_inline_html(c)}</td>" for c, td in
                                            zip(row, (('<td class="r">' if r else "<td>") for r in right),
                                                strict=True)) + "</tr>" for row in b.rows)
            out.append(f"<div class=\"scroll\"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
                       "</div>")
        elif isinstance(b, Figure):
            data = base64.b64encode((base_dir / b.path).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt=\"{html.escape(b.caption)}\" src=\"data:image/png;base64,{data}\">"
                       f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
        elif isinstance(b, Code):
            out.append(f"<pre><code>{html.escape(b.text)}</code></pre>")
        elif isinstance(b, Embed):  # srcdoc keeps the report one file; the frame isolates the page's CSS and script
            page = (base_dir / b.path).read_text(encoding="utf-8")
            out.append(f"<figure><iframe title=\"{html.escape(b.caption)}\" srcdoc=\"{html.escape(page)}\" "
                       f"style=\"width:100%;height:{b.height_px}px;border:1px solid #ccc\"></iframe>"
                       f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
    out.append("</body></html>\n")
    return "\n".join(out)

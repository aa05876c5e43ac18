"""One self-contained HTML page showing where a run's bits go (or where it differs from another run).

Every document is shown as its text, cut into spans (spans.refine: the tokens of one run, or the common
refinement of two runs' tokens). Each span is one ``<span class="s">`` element whose attributes record its bytes
(``data-s``, ``data-e``), its bits under A (``data-bits``; repr of the float, so the sums are exact) and under B
(``data-bits-b``), and the tokens inside it (``data-ta``/``data-tb``: JSON ``[token_id, context_tokens, bits,
token text]``). The element's text is the span's text (characters whose first byte lies in it), so a document's
spans read back as exactly its text; a span of continuation bytes only is drawn as a thin bar, the end-of-document
span as an "EOS" badge (both through CSS, adding no text). Colours are computed here (inline styles), so the page
is right without JavaScript; the small inline script only draws the tooltip. No network, no external file.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mdlbench.codelength import bits_per_byte, fsum_bits
from mdlbench.spans.diff import DocumentSpans, Tokens
from mdlbench.spans.refine import escape_text

SEQUENTIAL_MAX_BPB = 8.0  # raw bytes cost 8 bits/byte: the darkest colour means "no better than uniform-bytes"
# (position in [0, 1], colour): white -> yellow -> orange -> red (ColorBrewer YlOrRd).
SEQUENTIAL = ((0.0, "#ffffff"), (0.25, "#ffeda0"), (0.5, "#feb24c"), (0.75, "#f03b20"), (1.0, "#bd0026"))
# (position in [-1, 1], colour): blue (A needs fewer bits) -> white -> red (A needs more) (ColorBrewer RdBu).
DIVERGING = ((-1.0, "#2166ac"), (-0.5, "#92c5de"), (0.0, "#ffffff"), (0.5, "#f4a582"), (1.0, "#b2182b"))
NICE_LIMITS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def _rgb(color: str) -> tuple[int, int, int]:
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def interpolate(stops: Sequence[tuple[float, str]], x: float) -> str:
    """Colour at x on a piecewise-linear scale (x clipped to the stops' range).

    Example: interpolate(((0, "#000000"), (1, "#ffffff")), 0.5) -> "#808080".
    """
    x = min(max(x, stops[0][0]), stops[-1][0])
    for (x0, c0), (x1, c1) in zip(stops, stops[1:], strict=False):
        if x <= x1:
            t = 0.0 if x1 == x0 else (x - x0) / (x1 - x0)
            rgb = [round(a + (b - a) * t) for a, b in zip(_rgb(c0), _rgb(c1), strict=True)]
            return "#" + "".join(f"{v:02x}" for v in rgb)
    return stops[-1][1]


def is_dark(color: str) -> bool:
    """True when black text would be hard to read on this background (relative luminance below 0.4)."""
    def lin(v: int) -> float:
        c = v / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(v) for v in _rgb(color))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.4


def diverging_limit(deltas_bpb: np.ndarray) -> float:
    """Symmetric range of the diverging scale: the smallest NICE_LIMITS value covering 95% of |Δ bits/byte|."""
    finite = np.abs(deltas_bpb[np.isfinite(deltas_bpb)])
    q = float(np.quantile(finite, 0.95)) if finite.size else 0.0
    return next((v for v in NICE_LIMITS if v >= q), NICE_LIMITS[-1])


@dataclass(frozen=True)
class RunLabel:
    run_id: str
    model: str


def _token_json(data: bytes, t: Tokens, idx: np.ndarray) -> str:
    """Tokens of a span as JSON [token_id, context_tokens, bits, text]; a token's text is its bytes decoded with
    undecodable (partial-character) bytes shown as \\xNN."""
    rows = [[int(t.token_id[i]), int(t.context_tokens[i]), float(t.code_length_bits[i]),
             escape_text(data[t.byte_start[i]:t.byte_end[i]].decode("utf-8", "backslashreplace"))] for i in idx]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _members(span_of: np.ndarray, n_spans: int) -> list[np.ndarray]:
    order = np.argsort(span_of, kind="stable")
    return np.split(order, np.cumsum(np.bincount(span_of, minlength=n_spans))[:-1]) if n_spans else []


def _document_html(d: DocumentSpans, diff: bool, limit: float) -> str:
    n = len(d.span_start)
    width = (d.span_end - d.span_start).astype(np.float64)
    members_a, members_b = _members(d.span_of_a, n), _members(d.span_of_b, n)
    parts = []
    for i in range(n):
        s, e = int(d.span_start[i]), int(d.span_end[i])
        classes = ["s"]
        if e == s:
            classes.append("eos")
            color = "#e5e7eb"
        else:
            bpb_a = d.bits_a[i] / width[i]
            color = (interpolate(DIVERGING, (bpb_a - d.bits_b[i] / width[i]) / limit) if diff
                     else interpolate(SEQUENTIAL, bpb_a / SEQUENTIAL_MAX_BPB))
            if not d.text[i]:
                classes.append("c")
        if is_dark(color):
            classes.append("dk")
        attrs = [f'class="{" ".join(classes)}"', f'data-s="{s}"', f'data-e="{e}"',
                 f'data-bits="{float(d.bits_a[i])!r}"',
                 f'data-ta="{html.escape(_token_json(d.data, d.tokens_a, members_a[i]))}"']
        if diff:
            attrs += [f'data-bits-b="{float(d.bits_b[i])!r}"',
                      f'data-tb="{html.escape(_token_json(d.data, d.tokens_b, members_b[i]))}"']
        attrs.append(f'style="background:{color}"')
        parts.append(f"<span {' '.join(attrs)}>{html.escape(d.text[i], quote=False)}</span>")
    return "".join(parts)


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5em auto;max-width:1200px;
  padding:0 1em;color:#1f2937;line-height:1.4}
h1{font-size:1.3em;margin:.2em 0}
h2{font-size:1.05em;margin:1.4em 0 .3em}
h2 small{font-weight:normal;color:#4b5563}
.meta{color:#374151;font-size:.9em;margin:.2em 0}
.legend{margin:.8em 0 1em;font-size:.85em}
.bar{position:relative;height:14px;width:420px;border:1px solid #9ca3af}
.ticks{position:relative;width:420px;height:1.3em}
.ticks span{position:absolute;transform:translateX(-50%);white-space:nowrap}
.ticks span:first-child{transform:none}
.ticks span:last-child{transform:translateX(-100%)}
.doc .text{font-family:ui-monospace,"DejaVu Sans Mono","WenQuanYi Micro Hei Mono",monospace;font-size:13px;
  white-space:pre-wrap;overflow-wrap:anywhere;line-height:1.65;border:1px solid #d1d5db;padding:.6em .8em;
  background:#fff}
.s{border-radius:2px;box-shadow:inset -1px 0 rgba(0,0,0,.13)}
.s:hover{outline:2px solid #111827}
.s.dk{color:#fff}
.s.c{display:inline-block;width:.3em;height:1.1em;vertical-align:-.2em}
.s.eos{padding:0 .25em;margin-left:.15em;border:1px dashed #6b7280}
.s.eos::after{content:"EOS";font-size:.7em;color:#374151}
#tip{position:fixed;z-index:10;background:#111827;color:#f9fafb;font-size:12px;padding:.5em .7em;
  border-radius:4px;max-width:520px;pointer-events:none;box-shadow:0 2px 8px rgba(0,0,0,.3)}
#tip table{border-collapse:collapse;margin-top:.3em}
#tip td,#tip th{padding:0 .5em 0 0;text-align:left;vertical-align:top}
#tip th{color:#9ca3af;font-weight:normal}
#tip code{white-space:pre;color:#fde68a}"""

_JS = """(function(){
var tip=document.getElementById("tip");
function f(x,d){return Number(x).toFixed(d===undefined?2:d);}
function esc(s){return String(s).replace(/[&<>"]/g,function(c){return {"&":"&amp;","<":"&lt;",">":"&gt;",
'"':"&quot;"}[c];});}
function run(label,bits,n,toks){var h="<div><b>"+esc(label)+"</b>: "+f(bits)+" bits"+(n>0?" = "+f(bits/n)+
" bits/byte":"")+"</div><table><tr><th>token</th><th>id</th><th>bits</th><th>context</th></tr>";
toks.forEach(function(t){h+="<tr><td><code>"+esc(t[3])+"</code></td><td>"+t[0]+"</td><td>"+f(t[2])+"</td><td>"+
t[1]+"</td></tr>";});return h+"</table>";}
document.addEventListener("mouseover",function(ev){var s=ev.target.closest?ev.target.closest(".s"):null;
if(!s){tip.hidden=true;return;}var d=s.dataset,n=d.e-d.s,b=document.body.dataset;
var h="<div>bytes ["+d.s+", "+d.e+") &middot; "+n+" byte"+(n===1?"":"s")+(n===0?" (end of document)":"")+"</div>";
h+=run(b.labelA,d.bits,n,JSON.parse(d.ta));
if(d.bitsB!==undefined){h+=run(b.labelB,d.bitsB,n,JSON.parse(d.tb));
h+="<div>&Delta; = A &minus; B = "+f(d.bits-d.bitsB)+" bits"+(n>0?" = "+f((d.bits-d.bitsB)/n)+" bits/byte":"")+
"</div>";}
tip.innerHTML=h;tip.hidden=false;});
document.addEventListener("mousemove",function(ev){if(tip.hidden)return;var x=ev.clientX+14,y=ev.clientY+14;
var r=tip.getBoundingClientRect();if(x+r.width>window.innerWidth)x=Math.max(0,ev.clientX-r.width-14);
if(y+r.height>window.innerHeight)y=Math.max(0,ev.clientY-r.height-14);tip.style.left=x+"px";tip.style.top=y+"px";});
document.body.dataset.ready="1";
})();"""


def _legend(diff: bool, limit: float, label_a: str, label_b: str) -> str:
    stops = DIVERGING if diff else SEQUENTIAL
    lo, hi = stops[0][0], stops[-1][0]
    gradient = ", ".join(f"{c} {100 * (x - lo) / (hi - lo):.0f}%" for x, c in stops)
    if diff:
        ticks = [(-limit, f"≤ −{limit:g}"), (-limit / 2, f"−{limit / 2:g}"), (0.0, "0"), (limit / 2, f"+{limit / 2:g}"),
                 (limit, f"≥ +{limit:g}")]
        span = (-limit, limit)
        text = (f"Δ bits/byte of each span = (bits under A − bits under B) / its bytes. Blue: <b>{html.escape(label_a)}"
                f"</b> (A) needs fewer bits than <b>{html.escape(label_b)}</b> (B); red: more.")
    else:
        ticks = [(v, f"{v:g}" if v < SEQUENTIAL_MAX_BPB else f"≥ {v:g}") for v in (0.0, 2.0, 4.0, 6.0, 8.0)]
        span = (0.0, SEQUENTIAL_MAX_BPB)
        text = (f"bits/byte of each token under <b>{html.escape(label_a)}</b> (8 = no better than raw bytes).")
    marks = "".join(f'<span style="left:{100 * (v - span[0]) / (span[1] - span[0]):.1f}%">{html.escape(t)}</span>'
                    for v, t in ticks)
    return (f'<div class="legend"><div>{text}</div><div class="bar" style="background:linear-gradient(to right, '
            f'{gradient})"></div><div class="ticks">{marks}</div><div>Hover a span for its bytes, its tokens '
            "(id, bits, context length in tokens) and their bits. Thin bars: spans of bytes that continue a "
            "character begun in the previous span; dashed “EOS”: the end-of-document symbol.</div></div>")


def render_page(docs: Sequence[DocumentSpans], *, corpus: str, run_a: RunLabel, run_b: RunLabel | None) -> str:
    """The HTML page: ``run_b`` None shows run A's own tokens coloured by bits/byte (pass DocumentSpans of A with
    itself); otherwise the common refinement coloured by the difference A − B."""
    diff = run_b is not None
    label_a = run_a.model
    label_b = run_b.model if run_b is not None else ""
    if diff:
        deltas = [((d.bits_a - d.bits_b) / np.maximum(d.span_end - d.span_start, 1))[d.span_end > d.span_start]
                  for d in docs]
        limit = diverging_limit(np.concatenate(deltas) if deltas else np.zeros(0))
    else:
        limit = SEQUENTIAL_MAX_BPB
    title = f"{label_a} vs {label_b}" if diff else label_a
    head = [f"<h1>Where the bits go: {html.escape(title)}</h1>",
            f'<p class="meta">corpus <code>{html.escape(corpus)}</code> &middot; A = <code>{html.escape(label_a)}'
            f"</code> (run <code>{html.escape(run_a.run_id)}</code>)"
            + (f" &middot; B = <code>{html.escape(label_b)}</code> (run <code>{html.escape(run_b.run_id)}</code>)"
               if run_b is not None else "") + "</p>",
            _legend(diff, limit, label_a, label_b)]
    body = []
    for d in docs:
        bits_a, bits_b = fsum_bits(d.bits_a), fsum_bits(d.bits_b)
        stats = (f"{html.escape(d.domain or '(no domain)')} &middot; {d.n_bytes:,} byte{'s' * (d.n_bytes != 1)} "
                 f"&middot; A {bits_a:,.1f} bits")
        stats += f" ({_rate(bits_a, d.n_bytes)} bits/byte)"
        if diff:
            stats += (f" &middot; B {bits_b:,.1f} bits ({_rate(bits_b, d.n_bytes)} bits/byte) &middot; Δ "
                      f"{bits_a - bits_b:+,.1f} bits")
        body.append(f'<section class="doc" data-doc-id="{html.escape(d.doc_id)}" data-n-bytes="{d.n_bytes}" '
                    f'data-n-spans="{len(d.span_start)}"><h2>{html.escape(d.doc_id)} <small>{stats}</small></h2>'
                    f'<div class="text">{_document_html(d, diff, limit)}</div></section>')
    data = (f'data-mode="{"diff" if diff else "run"}" data-label-a="{html.escape(label_a)}" '
            f'data-label-b="{html.escape(label_b)}"')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>mdlbench view: {html.escape(title)}</title><style>{_CSS}</style></head>"
            f"<body {data}>{''.join(head)}{''.join(body)}<div id=\"tip\" hidden></div><script>{_JS}</script>"
            "</body></html>\n")


def _rate(bits: float, n_bytes: int) -> str:
    r = bits_per_byte(bits, n_bytes)
    return "—" if math.isnan(r) else f"{r:.3f}"

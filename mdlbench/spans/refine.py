"""PURE (numpy + stdlib): two runs' tokens on one document's bytes, cut into spans both runs agree on.

Each run's tokens tile the document's UTF-8 bytes ``[0, n)`` in order (an end-of-document symbol is an empty
span ``[n, n)``). The boundaries of a tiling are the offsets where its tokens start or end. The **common
refinement** cuts the bytes at every offset that is a boundary in *both* runs: spans
``[c_0, c_1), [c_1, c_2), …, [c_{m-1}, c_m)`` with ``c_0 = 0``, ``c_m = n``, plus the empty end span
``[n, n)`` when either run codes a symbol there (EOS). It is the finest cut on which every token of either run
lies inside exactly one span, so the bits of a span are the bits of the tokens inside it, and per document the
spans add up to each run's code length.

Example: A = "ab|c|d" (0-2, 2-3, 3-4), B = "a|bc|d" (0-1, 1-3, 3-4) -> common boundaries {0, 3, 4} ->
spans "abc" [0, 3) and "d" [3, 4).

Text of a span (byte-level tokenizers cut inside a multi-byte character, so a span's bytes need not be valid
UTF-8): the characters whose **first byte** lies in the span. Consecutive spans' texts therefore concatenate to
the document's text exactly; a span holding only continuation bytes of a character begun earlier has text "".

Class of a span (``span_class``), from the Unicode category of the characters that **overlap** it (any of
their bytes in the span; so a continuation-only span takes the class of the character it continues):
each character is ``whitespace`` (``str.isspace``), ``CJK`` (a letter in the Han, Hiragana, Katakana, Hangul or
Bopomofo blocks; CJK punctuation such as "，" is punctuation), ``letters`` (other categories L* and M*),
``digits`` (Nd), ``punctuation`` (P*), or ``other`` (symbols, emoji, other numbers, controls). The span's
class is the class shared by all its non-whitespace characters; ``whitespace`` if it has no other; ``mixed`` if
they differ; ``end`` for the empty end span.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SPAN_CLASSES = ("letters", "digits", "whitespace", "punctuation", "CJK", "other", "mixed", "end")

# Code point blocks whose letters count as CJK (Han incl. extensions and compatibility, kana, Hangul, Bopomofo).
_CJK_RANGES = ((0x1100, 0x11FF), (0x2E80, 0x2FDF), (0x3040, 0x30FF), (0x3100, 0x312F), (0x3130, 0x318F),
               (0x31A0, 0x31BF), (0x31F0, 0x31FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xA960, 0xA97F),
               (0xAC00, 0xD7FF), (0xF900, 0xFAFF), (0xFF66, 0xFFDC), (0x20000, 0x3FFFF))


class TilingError(ValueError):
    """A run's token spans do not tile the document's bytes (the message says where)."""


def check_tiling(byte_start: np.ndarray, byte_end: np.ndarray, n_bytes: int) -> None:
    """Raise TilingError unless the spans, in token order, cover [0, n_bytes) contiguously (empty spans allowed)."""
    s = np.asarray(byte_start, dtype=np.int64)
    e = np.asarray(byte_end, dtype=np.int64)
    if len(s) == 0:
        if n_bytes != 0:
            raise TilingError(f"no tokens for {n_bytes} bytes")
        return
    if (s < 0).any():
        raise TilingError("tokens without byte spans (byte_start -1)")
    if (e < s).any():
        i = int(np.flatnonzero(e < s)[0])
        raise TilingError(f"token {i} ends at byte {int(e[i])} before it starts at {int(s[i])}")
    gaps = np.flatnonzero(s[1:] != e[:-1])
    if s[0] != 0 or len(gaps) or e[-1] != n_bytes:
        where = 0 if s[0] != 0 else int(gaps[0]) + 1 if len(gaps) else len(s) - 1
        raise TilingError(f"token {where} spans [{int(s[where])}, {int(e[where])}), which breaks the tiling of "
                          f"[0, {n_bytes})")


@dataclass(frozen=True, slots=True)
class Refinement:
    """Spans of the common refinement and, for each token of A and of B, the index of the span holding it."""

    span_start: np.ndarray  # int64
    span_end: np.ndarray  # int64
    span_of_a: np.ndarray  # int64, one per token of A
    span_of_b: np.ndarray  # int64, one per token of B

    def __len__(self) -> int:
        return len(self.span_start)


def _span_index(common: np.ndarray, start: np.ndarray, end: np.ndarray, n_bytes: int, end_span: int) -> np.ndarray:
    """Span of each token: the regular span containing its first byte, or the end span for an empty one at n."""
    idx = np.searchsorted(common, start, side="right") - 1
    return np.where((start == n_bytes) & (end == n_bytes), end_span, idx).astype(np.int64)


def refine(start_a: np.ndarray, end_a: np.ndarray, start_b: np.ndarray, end_b: np.ndarray,
           n_bytes: int) -> Refinement:
    """The common refinement of two tilings of [0, n_bytes) (each checked with check_tiling first)."""
    start_a, end_a, start_b, end_b = (np.asarray(x, dtype=np.int64) for x in (start_a, end_a, start_b, end_b))
    for s, e in ((start_a, end_a), (start_b, end_b)):
        check_tiling(s, e, n_bytes)
    ends = np.array([0, n_bytes], dtype=np.int64)
    common = np.intersect1d(np.concatenate([ends, start_a, end_a]), np.concatenate([ends, start_b, end_b]))
    m = len(common) - 1  # regular spans; common holds 0 and n_bytes (a single 0 for an empty document)
    has_end = bool(((start_a == n_bytes) & (end_a == n_bytes)).any() or
                   ((start_b == n_bytes) & (end_b == n_bytes)).any())
    span_start = np.concatenate([common[:-1], [n_bytes] if has_end else []]).astype(np.int64)
    span_end = np.concatenate([common[1:], [n_bytes] if has_end else []]).astype(np.int64)
    return Refinement(span_start, span_end, _span_index(common, start_a, end_a, n_bytes, m),
                      _span_index(common, start_b, end_b, n_bytes, m))


def span_sums(span_of: np.ndarray, bits: np.ndarray, n_spans: int) -> np.ndarray:
    """Σ bits of the tokens in each span (tokens added in order; a span holds one or a few tokens)."""
    return np.bincount(np.asarray(span_of, dtype=np.int64), weights=np.asarray(bits, dtype=np.float64),
                       minlength=n_spans)


def lead_offsets(data: bytes) -> np.ndarray:
    """Byte offsets where a UTF-8 character starts, followed by len(data)."""
    b = np.frombuffer(data, dtype=np.uint8)
    return np.concatenate([np.flatnonzero((b & 0xC0) != 0x80), [len(data)]]).astype(np.int64)


def span_texts(data: bytes, span_start: np.ndarray, span_end: np.ndarray,
               leads: np.ndarray | None = None) -> list[str]:
    """Text of each span: the characters whose first byte lies in it (see the module docstring)."""
    leads = lead_offsets(data) if leads is None else leads
    first = leads[np.searchsorted(leads, span_start, side="left")]
    stop = leads[np.searchsorted(leads, span_end, side="left")]
    return [data[a:b].decode("utf-8") if b > a else "" for a, b in zip(first.tolist(), stop.tolist(), strict=True)]


def overlapping_texts(data: bytes, span_start: np.ndarray, span_end: np.ndarray,
                      leads: np.ndarray | None = None) -> list[str]:
    """The characters overlapping each span (a character cut by a span boundary belongs to both sides)."""
    leads = lead_offsets(data) if leads is None else leads
    first = leads[np.maximum(np.searchsorted(leads, span_start, side="right") - 1, 0)]
    stop = leads[np.searchsorted(leads, span_end, side="left")]
    return [data[a:b].decode("utf-8") if e > s else ""
            for a, b, s, e in zip(first.tolist(), stop.tolist(), span_start.tolist(), span_end.tolist(), strict=True)]


def char_class(ch: str) -> str:
    """Class of one character (see the module docstring)."""
    if ch.isspace():
        return "whitespace"
    cat = unicodedata.category(ch)
    if cat[0] in "LM" or cat == "Nl":
        cp = ord(ch)
        if any(lo <= cp <= hi for lo, hi in _CJK_RANGES):
            return "CJK"
        if cat[0] in "LM":
            return "letters"
    if cat == "Nd":
        return "digits"
    if cat[0] == "P":
        return "punctuation"
    return "other"


def text_class(chars: str) -> str:
    """Class of a span from the characters overlapping it; "" (no characters) is the end span.

    Example: text_class(" world") -> "letters", text_class("\\n\\n") -> "whitespace", text_class("x.") -> "mixed".
    """
    if not chars:
        return "end"
    classes = {char_class(c) for c in chars} - {"whitespace"}
    if not classes:
        return "whitespace"
    return classes.pop() if len(classes) == 1 else "mixed"


def escape_text(text: str, width: int | None = None) -> str:
    """A span's text for one console line: control and format characters escaped (\\n, \\t, \\x1b, \\u200b),
    backslashes doubled, optionally cut to ``width`` characters with "…"."""
    named = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
    out = []
    for ch in text:
        if ch in named:
            out.append(named[ch])
        elif unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}" if ord(ch) < 0x10000
                       else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    s = "".join(out)
    return s if width is None or len(s) <= width else s[: width - 1] + "…"


def classes_of(data: bytes, span_start: Sequence[int] | np.ndarray, span_end: Sequence[int] | np.ndarray,
               leads: np.ndarray | None = None) -> list[str]:
    """span_class of each span of one document."""
    s, e = np.asarray(span_start, dtype=np.int64), np.asarray(span_end, dtype=np.int64)
    return [text_class(t) for t in overlapping_texts(data, s, e, leads)]

"""Console formatting shared by the subcommands: one table layout, sizes, and the two-part lines."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from mdlbench.codelength import BITS_PER_BYTE
from mdlbench.console import CONSOLE_WIDTH, middle_ellipsis
from mdlbench.progress import byte_unit


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def _split_header(h: str) -> tuple[str, str] | None:
    """A header on two lines, cut after a '_' or at a space where the longer line is shortest; None when it has
    neither. Example: "final_model_data_bits" -> ("final_model_", "data_bits")."""
    cuts = [(h[: i + 1], h[i + 1:]) for i, c in enumerate(h[:-1]) if c == "_"]
    cuts += [(h[:i], h[i + 1:]) for i, c in enumerate(h) if c == " " and 0 < i < len(h) - 1]
    return min(cuts, key=lambda ab: max(map(len, ab)), default=None)


SHRINK_FLOOR = 8  # a shortened name keeps at least this many characters


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]], *, shrink: Sequence[str] = (),
                 width: int = CONSOLE_WIDTH) -> str:
    """A plain aligned text table (numbers right-aligned) for the console, at most ``width`` columns where it can
    be: when wider, headers longer than their column's cells go onto two lines (cut after '_' or at a space), and
    then the cells of the columns named in ``shrink`` (names) are cut in the middle, the widest first. Free text
    belongs under the table (``format_notes``), not in a column."""
    cells = [[_cell(v) for v in r] for r in rows]
    n = len(header)
    data = [max((len(r[i]) for r in cells), default=0) for i in range(n)]
    heads: list[tuple[str, ...]] = [(h,) for h in header]
    widths = [max(d, len(h)) for d, h in zip(data, header, strict=True)]

    def total() -> int:
        return sum(widths) + 2 * (n - 1)

    while total() > width:  # wrap the header that saves the most
        options = [(widths[i] - max(data[i], *map(len, ab)), i, ab) for i, h in enumerate(header)
                   if len(heads[i]) == 1 and (ab := _split_header(h))]
        saving, i, ab = max(options, default=(0, -1, ("", "")))
        if saving <= 0:
            break
        heads[i], widths[i] = ab, max(data[i], *map(len, ab))
    names = [i for i, h in enumerate(header) if h in shrink]
    while total() > width:  # then shorten the longest name by one character
        i = max(names, key=lambda j: widths[j], default=-1)
        if i < 0 or widths[i] <= max(SHRINK_FLOOR, *map(len, heads[i])):
            break
        widths[i] -= 1
    for i in names:
        for r in cells:
            r[i] = middle_ellipsis(r[i], widths[i])
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(n)]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(vals, widths, numeric, strict=True)).rstrip()

    depth = max(map(len, heads))
    head_lines = [fmt([h[k - depth + len(h)] if k - depth + len(h) >= 0 else "" for h in heads])
                  for k in range(depth)]  # a one-line header sits on the last header line
    return "\n".join([*head_lines, fmt(["-" * w for w in widths]), *(fmt(r) for r in cells)])


def format_notes(notes: Sequence[tuple[str, str]], *, width: int = CONSOLE_WIDTH) -> str:
    """Free text that would widen a table, as lines under it: "label: text", wrapped, later lines indented.
    Example: format_notes([("zstd-19-dict", "skipped: too little data")])."""
    return "\n".join(wrap_lines([text], first=f"{label}: ", indent=2, width=width) for label, text in notes)


def fmt_bytes(n: float) -> str:
    """Example: 478_000_000 -> '478.0 MB'."""
    unit, scale = byte_unit(n)
    return f"{n / scale:,.1f} {unit}" if scale > 1 else f"{n:,.0f} B"


def describe_two_part(rows: Any) -> list[str]:
    """One console line per parameter code of a run's ``two_part`` rows (a DataFrame)."""
    return [f"  {r.param_code:<16} model {r.model_bits / BITS_PER_BYTE / 1e6:10.3f} MB  "
            f"data {r.data_bits_per_byte:.4f} bits/byte  total {r.total_bits_per_byte:10.4f} bits/byte"
            for r in rows.itertuples()]


def wrap_lines(lines: Sequence[str], *, first: str = "", indent: int = 0, width: int = CONSOLE_WIDTH) -> str:
    """Paragraphs under a hanging label: ``first`` starts the first line, every line is indented by ``indent``;
    words wrap at ``width``, and a path or another word longer than a line is kept whole."""
    pad = " " * indent
    return "\n".join(textwrap.fill(line, width, initial_indent=first.ljust(indent) if i == 0 else pad,
                                   subsequent_indent=pad, break_long_words=False, break_on_hyphens=False)
                     for i, line in enumerate(lines))

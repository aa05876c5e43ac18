"""Console formatting shared by the subcommands: one table layout, sizes, and the two-part lines."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from typing import Any

from mdlbench.codelength import BITS_PER_BYTE
from mdlbench.progress import byte_unit


def _cell(v: object) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (numbers right-aligned) for the console."""
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [bool(rows) and all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, numeric, strict=True))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in cells)])


def fmt_bytes(n: float) -> str:
    """Example: 478_000_000 -> '478.0 MB'."""
    unit, scale = byte_unit(n)
    return f"{n / scale:,.1f} {unit}" if scale > 1 else f"{n:,.0f} B"


def describe_two_part(rows: Any) -> list[str]:
    """One console line per parameter code of a run's ``two_part`` rows (a DataFrame)."""
    return [f"  {r.param_code:<16} model {r.model_bits / BITS_PER_BYTE / 1e6:10.3f} MB  "
            f"data {r.data_bits_per_byte:.4f} bits/byte  total {r.total_bits_per_byte:10.4f} bits/byte"
            for r in rows.itertuples()]


CONSOLE_WIDTH = 120  # console summaries and notes fit a terminal this wide


def wrap_lines(lines: Sequence[str], *, first: str = "", indent: int = 0, width: int = CONSOLE_WIDTH) -> str:
    """Paragraphs under a hanging label: ``first`` starts the first line, every line is indented by ``indent``;
    words wrap at ``width``, and a path or another word longer than a line is kept whole."""
    pad = " " * indent
    return "\n".join(textwrap.fill(line, width, initial_indent=first.ljust(indent) if i == 0 else pad,
                                   subsequent_indent=pad, break_long_words=False, break_on_hyphens=False)
                     for i, line in enumerate(lines))

"""Console text for a person: the width every summary, note, log line and progress line fits, and the two ways a
long line is made to fit it (wrapping between words; cutting a name in the middle)."""

from __future__ import annotations

import textwrap

CONSOLE_WIDTH = 120  # console summaries, notes, log and progress lines fit a terminal this wide


def middle_ellipsis(text: str, width: int) -> str:
    """At most ``width`` characters, cut in the middle with "…" so that both ends stay (a model's family and its
    checkpoint step). Example: middle_ellipsis("model-step-1000", 9) == "mode…1000"."""
    if len(text) <= width:
        return text
    tail = (width - 1) // 2
    return text[: width - 1 - tail] + "…" + (text[-tail:] if tail else "")


def fit_line(text: str, *, indent: int = 2, width: int = CONSOLE_WIDTH) -> str:
    """One console line as it was when it fits ``width``; longer, it wraps between words with later lines indented
    by ``indent`` (a path or another word longer than a line is kept whole)."""
    return textwrap.fill(text, width, subsequent_indent=" " * indent, break_long_words=False, break_on_hyphens=False)

"""The one progress reporter: documents, bytes, tokens, rate and ETA on stderr (results never go there).

Modes: ``bar`` rewrites one line in place; ``json`` writes one JSON object per line (for log collectors and
schedulers) with ``label, docs_done, docs_total, bytes_done, bytes_total, tokens_done, tokens_total,
tokens_per_second, eta_seconds, elapsed_seconds, done`` (totals and the ETA are null when unknown); ``auto`` is
``bar`` on a terminal and a plain line every few seconds otherwise; ``none`` prints nothing.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from mdlbench.config import ProgressMode
from mdlbench.console import CONSOLE_WIDTH, fit_line, middle_ellipsis

Log = Callable[[str], None]  # one line of progress for a person (the bar and JSON modes are Progress's)
INTERVAL_TTY_S = 0.2
INTERVAL_LOG_S = 2.0
MIN_LABEL_CHARS = 24  # of a label, kept however long the counts are


def format_seconds(seconds: float) -> str:
    """Example: 75 -> '1m15s', 3700 -> '1h01m'; NaN or inf -> '?'."""
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def log_to_stderr(message: str) -> None:
    """The default ``Log``: one message on stderr, wrapped to the console width, flushed (progress and notes;
    results never go there)."""
    print(fit_line(message), file=sys.stderr, flush=True)


def byte_unit(n_bytes: float) -> tuple[str, float]:
    """The decimal unit a byte count of this size reads best in: B, KB, MB, GB or TB (``cli.fmt.fmt_bytes`` too)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n_bytes >= scale:
            return unit, scale
    return "B", 1.0


def eta_seconds(done: float, total: float, seconds_at_last_done: float, seconds_since_last_done: float) -> float:
    """Seconds left at the average rate up to the last advance of ``done``, counting down since then.

    Work can advance in steps (documents finish a chunk at a time); extrapolating from the current elapsed time
    instead would make the ETA climb between steps and drop at each one. inf when nothing is done yet.
    """
    if done <= 0:
        return math.inf
    projected = seconds_at_last_done * (total - done) / done
    return max(0.0, projected - seconds_since_last_done)


class Progress:
    """Counters of documents, bytes and tokens with optional totals; the ETA follows the most precise total known
    (tokens, then bytes, then documents)."""

    def __init__(self, label: str, *, total_docs: int | None = None, total_bytes: int | None = None,
                 total_tokens: int | None = None, mode: ProgressMode = "auto", stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        tty = self.stream.isatty()
        self.mode: ProgressMode = ("bar" if tty else "auto") if mode == "auto" else mode
        self.interval_s = INTERVAL_TTY_S if tty else INTERVAL_LOG_S
        self.reset(label, total_docs=total_docs, total_bytes=total_bytes, total_tokens=total_tokens)

    def reset(self, label: str, *, total_docs: int | None = None, total_bytes: int | None = None,
              total_tokens: int | None = None) -> None:
        """Start counting a new piece of work under a new label (e.g. the next compressor's pass)."""
        self.label = label
        self.totals = {"docs": total_docs, "bytes": total_bytes, "tokens": total_tokens}
        self.done = {"docs": 0, "bytes": 0, "tokens": 0}
        self.advanced_at = {"docs": 0.0, "bytes": 0.0, "tokens": 0.0}  # seconds since start of the last advance
        self.start = time.perf_counter()
        self.last_print = -math.inf

    @property
    def enabled(self) -> bool:
        return self.mode != "none"

    def update(self, n_docs: int = 0, n_bytes: int = 0, n_tokens: int = 0) -> None:
        now = time.perf_counter()
        for key, n in (("docs", n_docs), ("bytes", n_bytes), ("tokens", n_tokens)):
            if n:
                self.done[key] += n
                self.advanced_at[key] = now - self.start
        if self.enabled and now - self.last_print >= self.interval_s:
            self.last_print = now
            self._print(final=False)

    def eta(self) -> float:
        elapsed = time.perf_counter() - self.start
        for key in ("tokens", "bytes", "docs"):
            total = self.totals[key]
            if total and self.done[key]:
                return eta_seconds(self.done[key], total, self.advanced_at[key], elapsed - self.advanced_at[key])
        return math.nan

    def snapshot(self, final: bool = False) -> dict[str, object]:
        elapsed = time.perf_counter() - self.start
        eta = 0.0 if final else self.eta()
        return {"label": self.label, "docs_done": self.done["docs"], "docs_total": self.totals["docs"],
                "bytes_done": self.done["bytes"], "bytes_total": self.totals["bytes"],
                "tokens_done": self.done["tokens"], "tokens_total": self.totals["tokens"],
                "tokens_per_second": self.done["tokens"] / elapsed if elapsed > 0 else 0.0,
                "eta_seconds": eta if math.isfinite(eta) else None, "elapsed_seconds": elapsed, "done": final}

    def line(self, final: bool = False) -> str:
        s = self.snapshot(final)

        def of(key: str, scale: float = 1.0, fmt: str = ",.0f") -> str:
            total = self.totals[key]
            done = f"{self.done[key] / scale:{fmt}}"
            return done + (f"/{total / scale:{fmt}}" if total else "")

        parts: list[str] = []
        if self.done["docs"] or self.totals["docs"]:
            parts.append(f"{of('docs')} docs,")
        if self.done["bytes"] or self.totals["bytes"]:
            unit, scale = byte_unit(self.totals["bytes"] or self.done["bytes"])
            parts.append(f"{of('bytes', scale, ',.0f' if scale == 1 else ',.2f')} {unit},")
        if self.done["tokens"] or self.totals["tokens"]:
            parts.append(f"{of('tokens')} tokens, {s['tokens_per_second']:,.0f} tok/s")
        elif self.done["bytes"]:
            parts.append(f"{self.done['bytes'] / 1e6 / max(float(s['elapsed_seconds']), 1e-9):,.1f} MB/s")
        text = " ".join(parts).rstrip(",")
        eta = s["eta_seconds"]
        if final:
            text = f"{text}, done in {format_seconds(float(s['elapsed_seconds']))}"
        elif eta is not None:
            text = f"{text}, ETA {format_seconds(float(eta))}"
        # One line (the bar rewrites its line in place, so it must not wrap), CONSOLE_WIDTH wide at most unless the
        # counts alone take more than CONSOLE_WIDTH - MIN_LABEL_CHARS: a long label (model × corpus names) is cut in
        # the middle, the counts never.
        label = middle_ellipsis(self.label, max(CONSOLE_WIDTH - len(text) - 2, MIN_LABEL_CHARS))
        return f"{label}: {text}" if text else f"{label}:"

    def _print(self, final: bool) -> None:
        if self.mode == "json":
            self.stream.write(json.dumps(self.snapshot(final)) + "\n")
        elif self.mode == "bar":
            self.stream.write("\r\x1b[2K" + self.line(final) + ("\n" if final else ""))
        else:
            self.stream.write(self.line(final) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._print(final=True)

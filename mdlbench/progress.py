"""Progress on stderr: documents, bytes, tokens/s and ETA. Results never go to stderr, progress never to stdout."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _fmt_seconds(seconds: float) -> str:
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def eta_seconds(n_bytes: int, total_bytes: int, seconds_at_last_bytes: float, seconds_since_last_bytes: float) -> float:
    """Seconds left at the average rate up to the last byte update, counting down since then.

    Bytes advance once per chunk of documents; extrapolating from the current elapsed time instead would make the
    ETA climb between chunks and drop at each one.
    """
    if n_bytes <= 0:
        return float("inf")
    projected = seconds_at_last_bytes * (total_bytes - n_bytes) / n_bytes
    return max(0.0, projected - seconds_since_last_bytes)


class Progress:
    """One line, rewritten in place on a terminal, printed every `interval_s` otherwise (log files stay short)."""

    def __init__(self, label: str, total_bytes: int | None, stream: TextIO | None = None,
                 interval_s: float = 2.0, enabled: bool = True) -> None:
        self.label = label
        self.total_bytes = total_bytes
        self.stream = stream or sys.stderr
        self.interval_s = interval_s if not self.stream.isatty() else 0.2
        self.enabled = enabled
        self.start = time.perf_counter()
        self.last = 0.0
        self.n_docs = 0
        self.n_bytes = 0
        self.n_tokens = 0
        self.bytes_at = 0.0  # seconds since start at the last update that added bytes

    def update(self, n_docs: int = 1, n_bytes: int = 0, n_tokens: int = 0) -> None:
        self.n_docs += n_docs
        self.n_bytes += n_bytes
        self.n_tokens += n_tokens
        now = time.perf_counter()
        if n_bytes:
            self.bytes_at = now - self.start
        if self.enabled and now - self.last >= self.interval_s:
            self.last = now
            self._print(final=False)

    def _print(self, final: bool) -> None:
        elapsed = time.perf_counter() - self.start
        tps = self.n_tokens / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.label}: {self.n_docs} docs", f"{self.n_bytes / 1e6:.2f}"
                 + (f"/{self.total_bytes / 1e6:.2f}" if self.total_bytes else "") + " MB",
                 f"{tps:,.0f} tok/s"]
        if self.total_bytes and self.n_bytes and not final:
            eta = eta_seconds(self.n_bytes, self.total_bytes, self.bytes_at, elapsed - self.bytes_at)
            parts.append(f"ETA {_fmt_seconds(eta)}")
        if final:
            parts.append(f"done in {_fmt_seconds(elapsed)}")
        line = ", ".join(parts)
        if self.stream.isatty():
            self.stream.write("\r\x1b[2K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._print(final=True)

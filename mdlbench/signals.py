"""SIGINT and SIGTERM (what Ctrl-C and schedulers such as Slurm send) as an exception in the main thread.

``install()`` (the CLI calls it first) makes either signal raise ``errors.Interrupted`` at the next Python bytecode
of the main thread, so the process unwinds: locks are released, finished chunks stay for a resume, and the exit code
is 130 or 143. Inside ``deferred()`` a signal is held until the block ends: a commit's renames run to their end.
A signal that comes while a module is being imported is sent again a moment later instead: an exception raised in
the middle of a library's import surfaces as some other error, or aborts the process from native code, rather
than as ``Interrupted`` (seen with transformers and torch under load).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from mdlbench.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)
RETRY_SECONDS = 0.1  # how soon a signal that came during an import is sent again
_state = {"depth": 0, "pending": 0}


def in_import(frame: FrameType | None) -> bool:
    """Whether the frame runs inside an import (importlib's frozen bootstrap is on its stack)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["depth"]:
        _state["pending"] = signum
        return
    if in_import(frame):
        again = threading.Timer(RETRY_SECONDS, os.kill, (os.getpid(), signum))
        again.daemon = True
        again.start()
        return
    raise Interrupted(signum)


def install() -> dict[int, object]:
    """Route SIGINT and SIGTERM to ``Interrupted`` (main thread only, as Python requires); returns the previous
    handlers for ``restore``."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _handler) for signum in HANDLED}


def restore(previous: dict[int, object]) -> None:
    for signum, handler in previous.items():
        signal.signal(signum, handler)  # type: ignore[arg-type]


@contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM until the block ends, then raise for the last one that came."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        pending, _state["pending"] = _state["pending"], 0
        if pending and not _state["depth"]:
            raise Interrupted(pending)

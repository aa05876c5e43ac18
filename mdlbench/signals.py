"""SIGINT and SIGTERM (what Ctrl-C and schedulers such as Slurm send) as an exception in the main thread.

``install()`` (the CLI calls it first) makes either signal raise ``errors.Interrupted`` at the next Python bytecode
of the main thread, so the process unwinds: locks are released, finished chunks stay for a resume, and the exit code
is 130 or 143. Inside ``deferred()`` a signal is held until the block ends: a commit's renames run to their end.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from mdlbench.errors import Interrupted

HANDLED = (signal.SIGINT, signal.SIGTERM)
_state = {"depth": 0, "pending": 0}


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state["depth"]:
        _state["pending"] = signum
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

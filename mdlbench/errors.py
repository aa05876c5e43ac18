"""Errors a user can fix. The CLI prints them as one line and exits with their code; bad input is refused before
any result file is written (an extra that fails after its run was committed leaves that run in place)."""

from __future__ import annotations

import os
import signal

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # bad job, flag, corpus, model: nothing was computed (or one run's extra, refused late)
EXIT_RUN_FAILED = 3  # a run (or a committed run's extra) failed while others completed
EXIT_ENVIRONMENT = 4  # an OS error (disk full, permissions, read-only): nothing committed; a rerun resumes


def first_line(exc: BaseException, limit: int = 200) -> str:
    """A third-party exception as a phrase for a one-line error: its first line (or its type when it has no text),
    cut at a word boundary within ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0]
    return f"{cut} …"


class MdlbenchError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""

    exit_code = EXIT_BAD_INPUT


class InputError(MdlbenchError):
    """Bad corpus, model, flag or manifest."""


class ScoringError(MdlbenchError):
    """The model produced something that is not a code (NaN/inf logits)."""

    exit_code = EXIT_RUN_FAILED


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised in the main thread by the CLI's handler; a BaseException so that no ``except
    Exception`` swallows it. Exit code 128 + signal number (130, 143), as a shell reports a signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def os_cause(exc: OSError) -> str:
    """What went wrong, without the path. Example: "No space left on device"."""
    return exc.strerror or (os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__)


def with_path(exc: OSError, path: object) -> OSError:
    """The same OS error naming ``path`` when it names none (pyarrow's writes raise errors without a file name)."""
    if exc.filename is not None:
        return exc
    return OSError(exc.errno, os_cause(exc), str(path))


def describe_os_error(exc: OSError) -> str:
    """One line: the path and the cause. Example: "out/runs: No space left on device"."""
    cause = os_cause(exc)
    return f"{exc.filename}: {cause}" if exc.filename is not None else cause

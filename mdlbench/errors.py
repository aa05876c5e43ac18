"""Errors a user can fix. The CLI prints them as one line and exits with their code; no result files are written."""

from __future__ import annotations

EXIT_OK = 0
EXIT_BAD_INPUT = 2  # bad job, flag, corpus, model: nothing was computed
EXIT_RUN_FAILED = 3  # a run failed while others completed


class MdlbenchError(Exception):
    """A problem with the user's input or environment, with the fix in the message."""

    exit_code = EXIT_BAD_INPUT


class InputError(MdlbenchError):
    """Bad corpus, model, flag or manifest."""


class ScoringError(MdlbenchError):
    """The model produced something that is not a code (NaN/inf logits)."""

    exit_code = EXIT_RUN_FAILED

"""The files of a local corpus, and reading them: a corpus file that cannot be read is the user's input to fix.

Only an OS error while *writing* results is the environment's (exit 4); one while listing or reading a corpus is an
InputError naming the path (exit 2), raised before anything is written. A folder corpus is listed once, the same
way for reading, hashing and pinning, so that no file is silently left out: a symbolic link that points nowhere
and a subfolder that cannot be listed are refused, not skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from mdlbench.errors import InputError, os_cause


def cannot_read(path: Path | str, exc: OSError) -> InputError:
    """The one line for a corpus path the OS refuses to read."""
    return InputError(f"{path}: cannot read ({os_cause(exc)}); fix its permissions or remove it from the corpus")


@contextmanager
def reading(path: Path | str) -> Iterator[None]:
    """Turn an OS error raised while reading ``path`` (a corpus file or folder) into ``cannot_read``."""
    try:
        yield
    except OSError as exc:
        raise cannot_read(path, exc) from None


def _refuse(error: OSError) -> None:
    raise cannot_read(error.filename, error)


def folder_files(folder: Path, suffixes: Iterable[str] | None = None) -> list[Path]:
    """Every regular file below ``folder`` (links to files included, linked folders not entered), in sorted path
    order, optionally only those ending in one of ``suffixes``. A link that resolves to nothing (missing target or
    a loop) anywhere below the folder, and a subfolder that cannot be listed, are InputErrors naming the path."""
    wanted = None if suffixes is None else tuple(suffixes)
    files: list[Path] = []
    for root, _, names in os.walk(folder, onerror=_refuse):
        for name in names:
            path = Path(root) / name
            if path.is_symlink() and not path.exists():
                raise InputError(f"{path}: a symbolic link that points nowhere (to {os.readlink(path)}); remove it "
                                 "or point it at a file")
            if path.is_file() and (wanted is None or path.suffix in wanted):
                files.append(path)
    return sorted(files)

"""File-system primitives every writer uses: atomic writes and advisory locks.

Atomic: data goes to a hidden temporary file in the same folder, is flushed to disk, then renamed over the target
(``os.replace`` is atomic on POSIX), so a reader or a crash sees the old file or the new one, never a mix.
Locks: ``fcntl.flock`` on a file; the kernel releases it when the holder dies, so a lock is never stale.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdlbench.errors import InputError, with_path

if TYPE_CHECKING:
    import pyarrow as pa


def check_out_dir(out_dir: Path) -> None:
    """The results folder is a folder, or can be made one: refused (nothing written) when it or an ancestor is a
    file (bad input), or when the folder that would hold it cannot be written to (an OS error, raised before any
    work starts rather than when the first chunk is committed). Every command that writes a results folder calls
    this before it reads its inputs."""
    probe = nearest_existing(Path(out_dir))
    if not probe.is_dir():
        what = "is a file" if probe == Path(out_dir) else f"is under {probe}, which is a file"
        raise InputError(f"--out {out_dir}: {what}; give a folder for the results (it is created if missing)")
    require_writable(probe)


def nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (what a ``mkdir(parents=True)`` would create under)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def require_writable(folder: Path) -> None:
    """An existing folder new entries can be made in; else the OS error a write would raise (exit 4), now."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, "cannot write here (no permission, or a read-only file system)",
                              str(folder))


def temporary_sibling(path: Path) -> Path:
    """A hidden, unique name next to ``path`` (readers and Hive partition discovery skip names starting with ".")."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it is fsynced and renamed onto ``path``, on error removed."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise with_path(exc, path) from exc  # a failed write names no file; say which one
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, sort_keys=True))


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        try:
            pq.write_table(table, tmp)
        except OSError as exc:
            raise with_path(exc, path) from exc


@contextmanager
def file_lock(path: Path, *, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive advisory lock; waits (after calling on_wait once) if another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.seek(0)
            f.truncate()
            f.write(f"{os.getpid()}\n")
            f.flush()
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock at ``path`` right now."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False

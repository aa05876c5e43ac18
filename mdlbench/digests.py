"""sha256 of files, remembered by their file-system identity so that a rerun does not read them again.

Run ids are content addresses over the bytes of weights, tokenizer files and corpora. Hashing a folder of
checkpoints on every nightly rerun would take minutes, so a digest is cached under ``$MDLBENCH_CACHE``
(default ``~/.cache/mdlbench``) keyed by (real path, size, mtime_ns, ctime_ns, inode, device), as git's index
does: any write to the file changes its ctime, which no tool can set back, so a changed file is always re-read.
The cache is best effort: an unwritable cache folder only means files are hashed again next time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mdlbench.fsio import write_text_atomic

CACHE_ENV = "MDLBENCH_CACHE"
CACHE_MIN_BYTES = 1 << 20  # smaller files are hashed faster than their cache entry is found
_READ_BYTES = 1 << 20


def cache_dir() -> Path:
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mdlbench"


def _hash_file(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    n_bytes = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_BYTES):
            h.update(chunk)
            n_bytes += len(chunk)
    return h.hexdigest(), n_bytes


def _cache_entry(path: Path, st: os.stat_result) -> Path:
    key = "\0".join(map(str, (os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                              st.st_dev)))
    return cache_dir() / "sha256" / hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def file_sha256(path: Path) -> tuple[str, int]:
    """(sha256 hex digest, size in bytes) of a file's contents."""
    path = Path(path)
    st = path.stat()
    if st.st_size < CACHE_MIN_BYTES:
        return _hash_file(path)
    entry = _cache_entry(path, st)
    try:
        digest = entry.read_text("ascii").strip()
        if len(digest) == 64:
            return digest, st.st_size
    except (OSError, UnicodeDecodeError):
        pass
    digest, n_bytes = _hash_file(path)
    if n_bytes == st.st_size and _cache_entry(path, path.stat()) == entry:  # unchanged while we read it
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(entry, digest)
        except OSError:
            pass
    return digest, n_bytes


def files_sha256(named: list[tuple[str, Path]]) -> str:
    """One digest over (name, sha256) of several files, in the given order."""
    h = hashlib.sha256()
    for name, path in named:
        h.update(name.encode("utf-8", "surrogateescape") + b"\0" + file_sha256(path)[0].encode() + b"\n")
    return h.hexdigest()


def cached_json(kind: str, content_sha256: str, compute: Callable[[], Any]) -> Any:
    """A JSON-serializable fact derived from a file's contents alone (e.g. a GGUF's declared tokenizer), computed
    once per content digest and kept in the cache next to the digests."""
    entry = cache_dir() / kind / f"{content_sha256}.json"
    try:
        return json.loads(entry.read_text("utf-8"))
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(entry, json.dumps(value))
    except OSError:
        pass
    return value

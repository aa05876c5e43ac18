"""PURE: the ``.mdlz`` container — a small binary header around the coded payload, checked on read.

Layout (all integers little-endian)::

    offset  size  field
    0       8     magic  b"\\x89MDLZ\\r\\n\\x1a"  (PNG-style: catches text-mode and 7-bit transfers)
    8       2     format version (uint16), currently 1
    10      4     metadata length L (uint32)
    14      4     CRC-32 of the metadata bytes (uint32)
    18      L     metadata: UTF-8 JSON object, sorted keys, no spaces
    18+L    ...   payload (to the end of the file)

The metadata records everything decoding needs and checks (model and tokenizer sha256, window, policies,
original length and sha256) plus ``payload_bytes`` and ``payload_sha256``, so a truncated or corrupted
payload is rejected before any decoding starts. The header is ``header_bytes = 18 + L``; the code length of the
content is ``8 * payload_bytes``.

    >>> blob = pack({"a": 1}, b"xy")
    >>> len(blob), unpack(blob).header_bytes, unpack(blob).payload
    (129, 127, b'xy')

Invariant: ``unpack(pack(meta, payload))`` returns ``meta`` (as JSON round-trips it) and ``payload``; any change
to a byte of the magic, version, metadata or payload raises :class:`CorruptFileError`.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from mdlbench.errors import InputError

MAGIC = b"\x89MDLZ\r\n\x1a"
FORMAT_VERSION = 1
SUFFIX = ".mdlz"
_FIXED = struct.Struct("<8sHII")  # magic, version, metadata length, metadata crc32
FIXED_HEADER_BYTES = _FIXED.size  # 18
MAX_METADATA_BYTES = 1 << 20


class CorruptFileError(InputError):
    """The file is not an mdlbench container, or it was damaged (magic, version, CRC or sha256 check failed)."""


@dataclass(frozen=True, slots=True)
class Container:
    meta: dict[str, Any]
    payload: bytes
    header_bytes: int  # everything before the payload


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(meta: dict[str, Any], payload: bytes) -> bytes:
    """Header + payload. ``payload_bytes`` and ``payload_sha256`` are added to the metadata here."""
    full = {**meta, "payload_bytes": len(payload), "payload_sha256": sha256_hex(payload)}
    body = json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    if len(body) > MAX_METADATA_BYTES:
        raise ValueError(f"container metadata of {len(body)} bytes exceeds {MAX_METADATA_BYTES}")
    return _FIXED.pack(MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)) + body + payload


def unpack(blob: bytes, *, name: str = "input") -> Container:
    """Parse and check a container; every failure is a CorruptFileError saying which check failed."""
    if len(blob) < FIXED_HEADER_BYTES or blob[:len(MAGIC)] != MAGIC:
        raise CorruptFileError(f"{name}: not an mdlbench compressed file (bad magic; expected a file written by "
                               "`mdlbench compress`)")
    magic, version, meta_len, meta_crc = _FIXED.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise CorruptFileError(f"{name}: container format version {version} is not supported by this mdlbench "
                               f"(it reads version {FORMAT_VERSION}); use the mdlbench version that wrote it")
    end = FIXED_HEADER_BYTES + meta_len
    if meta_len > MAX_METADATA_BYTES or end > len(blob):
        raise CorruptFileError(f"{name}: truncated or corrupted header (metadata length {meta_len}, file has "
                               f"{len(blob)} bytes)")
    body = blob[FIXED_HEADER_BYTES:end]
    if zlib.crc32(body) != meta_crc:
        raise CorruptFileError(f"{name}: corrupted header (metadata CRC-32 mismatch)")
    try:
        meta = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{name}: corrupted header (metadata is not JSON: {exc})") from exc
    if not isinstance(meta, dict):
        raise CorruptFileError(f"{name}: corrupted header (metadata is not a JSON object)")
    payload = blob[end:]
    if meta.get("payload_bytes") != len(payload):
        raise CorruptFileError(f"{name}: truncated or extended payload ({len(payload)} bytes, the header says "
                               f"{meta.get('payload_bytes')})")
    if meta.get("payload_sha256") != sha256_hex(payload):
        raise CorruptFileError(f"{name}: corrupted payload (sha256 mismatch)")
    return Container(meta, payload, end)

"""The ``.mdlz`` container: a checked header, an index of documents, and one payload per document.

Layout (all integers little-endian)::

    offset      size  field
    0           8     magic  b"\\x89MDLZ\\r\\n\\x1a"  (PNG-style: catches text-mode and 7-bit transfers)
    8           2     format version (uint16), currently 2
    10          4     header length L (uint32)
    14          4     CRC-32 of the header bytes (uint32)
    18          L     header: UTF-8 JSON object, sorted keys, no spaces — what decoding needs and checks (kind,
                      model and tokenizer sha256, coding settings, batch plan settings, environment) plus
                      ``index_bytes``, ``index_crc32``, ``index_sha256`` and ``payload_bytes``
    18+L        I     index: zlib-compressed (level 9) UTF-8 JSON object: ``docs`` (one entry per document, in
                      corpus order: id, method, payload length and CRC-32, original length and sha256, token
                      count, symbols, ideal bits to 0.001 bit) and ``plan`` (the chunks and each chunk's entry
                      order, see plan.py). Payload offsets are the running sum of the lengths. Compressed, and
                      without derivable fields, because the index is part of what the archive costs: per document
                      it is about 60 bytes (mostly the sha256), next to a payload of a few hundred.
    18+L+I      P     payloads, concatenated in index order (entry offsets are relative to this point)

The file is exactly 18 + L + I + P bytes. A damaged magic, version, header or index makes the whole file
unreadable (:class:`CorruptFileError`); a damaged payload fails only its own document (its length and CRC-32 are
checked before it is decoded, and the decoded document's sha256 after), so the other documents still extract.

    >>> blob = pack({"kind": "file"}, [{"id": "a", "original_bytes": 2}], [b"xy"], {"chunks": []})
    >>> c = unpack(blob); (c.entries[0]["offset"], c.payload(0), c.header["payload_bytes"])
    (0, b'xy', 2)

Invariant: ``unpack(pack(header, entries, payloads, plan))`` returns them (as JSON round-trips them, with lengths,
CRCs and offsets added and ideal bits rounded), and any change to a byte of the magic, version, header or index
raises :class:`CorruptFileError`; a change to a payload byte makes :meth:`Container.payload` raise it for that
entry only.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from mdlbench.errors import InputError

MAGIC = b"\x89MDLZ\r\n\x1a"
FORMAT_VERSION = 2
SUFFIX = ".mdlz"
_FIXED = struct.Struct("<8sHII")  # magic, version, header length, header crc32
FIXED_HEADER_BYTES = _FIXED.size  # 18
MAX_HEADER_BYTES = 1 << 20
MAX_INDEX_BYTES = 1 << 31
INDEX_ZLIB_LEVEL = 9
IDEAL_BITS_DECIMALS = 3


class CorruptFileError(InputError):
    """The file is not an mdlbench container, or it was damaged (magic, version, CRC or sha256 check failed)."""


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def layout_entries(entries: Sequence[dict[str, Any]], payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    """Entries with ``offset``, ``payload_bytes`` and ``payload_crc32`` of their payloads filled in."""
    out, offset = [], 0
    for entry, payload in zip(entries, payloads, strict=True):
        out.append({**entry, "offset": offset, "payload_bytes": len(payload), "payload_crc32": zlib.crc32(payload)})
        offset += len(payload)
    return out


def _stored(entry: dict[str, Any]) -> dict[str, Any]:
    """What the index keeps of an entry: no offset (derived), ideal bits to 0.001 bit (informational)."""
    out = {k: v for k, v in entry.items() if k != "offset"}
    if "ideal_bits" in out:
        out["ideal_bits"] = round(float(out["ideal_bits"]), IDEAL_BITS_DECIMALS)
    return out


def header_and_index(header: dict[str, Any], entries: Sequence[dict[str, Any]], plan: dict[str, Any]
                     ) -> tuple[bytes, bytes]:
    """(fixed part + header, index) for entries that already carry their lengths and CRCs."""
    index = zlib.compress(_json_bytes({"docs": [_stored(e) for e in entries], "plan": plan}), INDEX_ZLIB_LEVEL)
    if len(index) > MAX_INDEX_BYTES:
        raise ValueError(f"container index of {len(index)} bytes exceeds {MAX_INDEX_BYTES}")
    full = {**header, "index_bytes": len(index), "index_crc32": zlib.crc32(index), "index_sha256": sha256_hex(index),
            "payload_bytes": sum(int(e["payload_bytes"]) for e in entries)}
    body = _json_bytes(full)
    if len(body) > MAX_HEADER_BYTES:
        raise ValueError(f"container header of {len(body)} bytes exceeds {MAX_HEADER_BYTES}")
    return _FIXED.pack(MAGIC, FORMAT_VERSION, len(body), zlib.crc32(body)) + body, index


def pack(header: dict[str, Any], entries: Sequence[dict[str, Any]], payloads: Sequence[bytes],
         plan: dict[str, Any]) -> bytes:
    """The whole container in memory (single files, tests, --verify-coding); archive.py streams large ones."""
    head, index = header_and_index(header, layout_entries(entries, payloads), plan)
    return head + index + b"".join(payloads)


@dataclass
class Container:
    """A parsed container: header and index checked; payloads read (and checked) on demand."""

    header: dict[str, Any]
    entries: list[dict[str, Any]]
    plan: dict[str, Any]
    header_bytes: int  # fixed part + header + index: everything that is not payload
    name: str
    _file: BinaryIO

    def payload(self, i: int) -> bytes:
        """Entry i's payload; CorruptFileError (naming the document) if its length or CRC-32 do not match."""
        entry = self.entries[i]
        self._file.seek(self.header_bytes + int(entry["offset"]))
        data = self._file.read(int(entry["payload_bytes"]))
        if len(data) != entry["payload_bytes"] or zlib.crc32(data) != entry.get("payload_crc32"):
            raise CorruptFileError(f"{self.name}: document {entry.get('id')!r}: corrupted payload (CRC-32 mismatch)")
        return data

    def close(self) -> None:
        self._file.close()


def unpack(source: bytes | Path, *, name: str = "input") -> Container:
    """Parse and check a container (bytes, or a path read lazily); every failure is a CorruptFileError."""
    if isinstance(source, bytes | bytearray):
        f: BinaryIO = io.BytesIO(source)
        size = len(source)
    else:
        try:
            f = Path(source).open("rb")  # noqa: SIM115 — kept open by the Container, closed by Container.close
            size = Path(source).stat().st_size
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror})") from None
    try:
        return _parse(f, size, name)
    except BaseException:
        f.close()
        raise


def _parse(f: BinaryIO, size: int, name: str) -> Container:
    fixed = f.read(FIXED_HEADER_BYTES)
    if len(fixed) < FIXED_HEADER_BYTES or fixed[:len(MAGIC)] != MAGIC:
        raise CorruptFileError(f"{name}: not an mdlbench compressed file (bad magic; expected a file written by "
                               "`mdlbench compress`)")
    _, version, header_len, header_crc = _FIXED.unpack(fixed)
    if version != FORMAT_VERSION:
        raise CorruptFileError(f"{name}: container format version {version} is not supported by this mdlbench "
                               f"(it reads version {FORMAT_VERSION}); use the mdlbench version that wrote it")
    if header_len > MAX_HEADER_BYTES or FIXED_HEADER_BYTES + header_len > size:
        raise CorruptFileError(f"{name}: truncated or corrupted header (header length {header_len}, file has "
                               f"{size} bytes)")
    body = f.read(header_len)
    if zlib.crc32(body) != header_crc:
        raise CorruptFileError(f"{name}: corrupted header (CRC-32 mismatch)")
    header = _json_object(body, name, "header")
    try:
        index_len, payload_len = int(header["index_bytes"]), int(header["payload_bytes"])
        index_crc, index_sha = int(header["index_crc32"]), str(header["index_sha256"])
    except (KeyError, TypeError, ValueError):
        raise CorruptFileError(f"{name}: the header lacks the index size and checksums (damaged, or not written "
                               "by `mdlbench compress`)") from None
    start = FIXED_HEADER_BYTES + header_len
    if start + index_len + payload_len != size:
        raise CorruptFileError(f"{name}: truncated or extended file ({size} bytes; the header says "
                               f"{start + index_len + payload_len})")
    index = f.read(index_len)
    if zlib.crc32(index) != index_crc or sha256_hex(index) != index_sha:
        raise CorruptFileError(f"{name}: corrupted index (CRC-32/sha256 mismatch); no document can be located")
    try:
        index = zlib.decompress(index)
    except zlib.error as exc:
        raise CorruptFileError(f"{name}: corrupted index (zlib: {exc})") from None
    parsed = _json_object(index, name, "index")
    entries, plan = parsed.get("docs"), parsed.get("plan")
    if not isinstance(entries, list) or not isinstance(plan, dict) or not all(isinstance(e, dict) for e in entries):
        raise CorruptFileError(f"{name}: corrupted index (no document list)")
    offset = 0
    for e in entries:
        if not isinstance(e.get("payload_bytes"), int) or e["payload_bytes"] < 0:
            raise CorruptFileError(f"{name}: corrupted index (payload length of document {e.get('id')!r})")
        e["offset"] = offset
        offset += e["payload_bytes"]
    if offset != payload_len:
        raise CorruptFileError(f"{name}: corrupted index (payload lengths add up to {offset}, not {payload_len})")
    return Container(header, entries, plan, start + index_len, name, f)


def _json_object(data: bytes, name: str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptFileError(f"{name}: corrupted {what} (not JSON: {exc})") from None
    if not isinstance(obj, dict):
        raise CorruptFileError(f"{name}: corrupted {what} (not a JSON object)")
    return obj

"""Classical compressors behind one streaming interface, each name carrying its setting (``gzip-9``, ``xz-9e``...).

Every entry of ``COMPRESSORS`` gives a streaming encoder (for a corpus larger than memory), a one-shot encoder
(for one document, what ``tool FILE`` does) and a streaming decoder whose output is bounded per step, plus the
library name and version, which are reported with every number (results differ across library versions).

Settings (METHODS.md §5.4), all single-threaded:

* ``gzip-N``: zlib level N, gzip container (``wbits=31``): 10-B header with mtime 0 and no file name, 8-B trailer.
* ``bz2-9``: 900 kB blocks. ``xz-9e``: preset 9|EXTREME, xz container, CRC64 check.
* ``zstd-N``: level N, no checksum. One document is compressed with its size known (content size in the frame
  header, parameters fitted to the size, as ``zstd FILE`` does); a concatenated corpus is a stream of unknown size.
* ``zstd-22-long``: level 22 ("--ultra") with long-distance matching and a 128 MiB window (``--long=27``).
* ``brotli-11``: quality 11, 16 MiB window (``lgwin=24``), generic mode.
* ``ppmd-oN``: PPMd variant H (7-Zip's Ppmd7) via pyppmd, order N, 256 MiB model memory (LTCB's ``-m256``). The raw
  stream ends with the PPMd end mark, so it is self-delimiting like the other formats (the end mark costs a byte
  or two); the order and memory are not stored in the stream: they are part of the compressor's name.
* ``zstd-19-dict``: zstd level 19 with a trained dictionary; see ``mdlbench.baselines.run`` for how the dictionary is
  trained without seeing the bytes it codes (2-fold cross-fitting) and counted in the code length.

PPMd decoding: pyppmd 1.3.1's decoder has returned short output and even crashed on large inputs elsewhere
(ENVIRONMENT.md), so its round trips are decoded in a child process (``isolate_decoder``): a crash there cannot
take mdlbench down, and anything but a clean, hash-identical decode is reported as ``roundtrip_verified=False``.
7-Zip's ``7zz`` could serve as an independent decoder but needs a .7z container around the raw stream; it is not
used (it is not on the development machines either).
"""

from __future__ import annotations

import array
import bz2
import ctypes
import difflib
import functools
import hashlib
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import brotli
import pyppmd
import zstandard

from mdlbench.errors import InputError

# Decoders never return more than this per step, and files are read in pieces of this size, so memory stays
# bounded however well a stream compresses.
PIECE_BYTES = 1 << 20
PPMD_MEMORY_BYTES = 256 << 20
BROTLI_LGWIN = 24
ZSTD_LONG_WINDOW_LOG = 27  # --long's default; also libzstd's default decoder limit, so no flag is needed to decode


class Encoder(Protocol):
    def compress(self, data: bytes) -> bytes: ...
    def flush(self) -> bytes: ...


# A decoder reads compressed bytes through ``read(n)`` (b"" at the end of the frame) and yields the output.
ReadFn = Callable[[int], bytes]


@dataclass(frozen=True)
class CompressorSpec:
    """One compressor at one pinned setting. ``dictionary`` is only accepted where ``uses_dictionary``."""

    name: str
    library: str
    library_version: str
    setting: str  # every parameter that changes the output, for `--list` and the table
    new_encoder: Callable[[bytes | None], Encoder]  # streaming, size unknown
    compress_one: Callable[[bytes, bytes | None], bytes]  # one document, size known
    decode: Callable[[ReadFn, bytes | None], Iterator[bytes]]
    isolate_decoder: bool = False  # decode in a child process (the decoder is not trusted not to crash)
    uses_dictionary: bool = False


# ---------------------------------------------------------------------------------------------------------------
# Library versions: the C library's own version where the Python module exposes it or its symbol can be asked.

def _c_version(module_file: str | None, symbol: str) -> str | None:
    try:
        fn = getattr(ctypes.CDLL(module_file), symbol)
    except (OSError, AttributeError, TypeError):
        return None
    fn.restype = ctypes.c_char_p
    return fn().decode("ascii", "replace").split(",")[0]


def _module_file(name: str) -> str | None:
    module = sys.modules.get(name) or __import__(name)
    return getattr(module, "__file__", None)


_PY = f"python-{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
ZLIB_VERSION = zlib.ZLIB_RUNTIME_VERSION
BZ2_VERSION = _c_version(_module_file("_bz2"), "BZ2_bzlibVersion") or f"bundled-with-{_PY}"
LZMA_VERSION = _c_version(_module_file("_lzma"), "lzma_version_string") or f"bundled-with-{_PY}"
ZSTD_VERSION = f"{zstandard.__version__}+libzstd-{'.'.join(map(str, zstandard.ZSTD_VERSION))}"
BROTLI_VERSION = getattr(brotli, "__version__", None) or str(brotli.version)
PPMD_VERSION = pyppmd.__version__


# ---------------------------------------------------------------------------------------------------------------
# Decoders. Each yields bounded pieces and raises ValueError on a truncated stream or trailing bytes.

def _no_dictionary(dictionary: bytes | None) -> None:
    if dictionary is not None:
        raise ValueError("this compressor takes no dictionary")


def _decode_zlib(read: ReadFn, wbits: int) -> Iterator[bytes]:
    d = zlib.decompressobj(wbits)
    while chunk := read(PIECE_BYTES):
        while chunk:
            yield d.decompress(chunk, PIECE_BYTES)
            chunk = d.unconsumed_tail
    yield d.flush()
    if not d.eof or d.unused_data:
        raise ValueError("deflate stream truncated or followed by extra bytes")


def _decode_bounded(read: ReadFn, d: Any, step: Callable[[bytes, int], bytes]) -> Iterator[bytes]:
    """Feed a decoder with eof/needs_input (bz2, lzma, PPMd) in pieces, never holding more than PIECE_BYTES."""
    while chunk := read(PIECE_BYTES):
        if d.eof:
            raise ValueError("extra bytes after the end of the stream")
        yield step(chunk, PIECE_BYTES)
        while not d.eof and not d.needs_input:
            yield step(b"", PIECE_BYTES)
    if not d.eof or getattr(d, "unused_data", b""):
        raise ValueError("stream truncated before its end mark, or followed by extra bytes")


def _decode_bz2_lzma(read: ReadFn, d: bz2.BZ2Decompressor | lzma.LZMADecompressor) -> Iterator[bytes]:
    return _decode_bounded(read, d, d.decompress)


class _ReadFile:
    """A file-like view of a ReadFn, for zstandard's stream_reader."""

    def __init__(self, read: ReadFn) -> None:
        self.read = read


def _decode_zstd(read: ReadFn, dictionary: bytes | None) -> Iterator[bytes]:
    zd = zstandard.ZstdDecompressor(dict_data=zstandard.ZstdCompressionDict(dictionary) if dictionary else None)
    # read_across_frames=False: one frame per unit; a second frame would be extra bytes, caught below.
    with zd.stream_reader(_ReadFile(read), read_size=PIECE_BYTES, read_across_frames=False,
                          closefd=False) as reader:
        while piece := reader.read(PIECE_BYTES):
            yield piece
    if read(1):
        raise ValueError("extra bytes after the zstd frame")


def _decode_brotli(read: ReadFn) -> Iterator[bytes]:
    d = brotli.Decompressor()
    while chunk := read(PIECE_BYTES):
        # Drain until no output comes: can_accept_more_data() can be True while output is still pending (brotli
        # 1.2.1 held back 0.8 MB of a 2.9 MB stream that way), and draining first keeps the input buffer small.
        out = d.process(chunk, output_buffer_limit=PIECE_BYTES)
        while out:
            yield out
            out = d.process(b"", output_buffer_limit=PIECE_BYTES)
    if not d.is_finished():
        raise ValueError("brotli stream truncated")


def _decode_ppmd(read: ReadFn, order: int) -> Iterator[bytes]:
    d = pyppmd.Ppmd7Decoder(order, PPMD_MEMORY_BYTES)
    return _decode_bounded(read, d, d.decode)


# ---------------------------------------------------------------------------------------------------------------
# Encoders: thin adapters giving every library the same compress()/flush() shape.

class _Adapter:
    def __init__(self, compress: Callable[[bytes], bytes], flush: Callable[[], bytes]) -> None:
        self.compress = compress
        self.flush = flush


def _gzip(level: int) -> CompressorSpec:
    def new_encoder(dictionary: bytes | None) -> Encoder:
        _no_dictionary(dictionary)
        return zlib.compressobj(level, zlib.DEFLATED, 31)

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        _no_dictionary(dictionary)
        return zlib.compress(data, level, wbits=31)

    return CompressorSpec(f"gzip-{level}", "zlib", ZLIB_VERSION, f"level={level} wbits=31 (gzip, mtime=0)",
                          new_encoder, compress_one, lambda read, dictionary: _decode_zlib(read, 31))


def _bz2() -> CompressorSpec:
    def new_encoder(dictionary: bytes | None) -> Encoder:
        _no_dictionary(dictionary)
        return bz2.BZ2Compressor(9)

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        _no_dictionary(dictionary)
        return bz2.compress(data, 9)

    return CompressorSpec("bz2-9", "libbz2", BZ2_VERSION, "blocksize=900k", new_encoder, compress_one,
                          lambda read, dictionary: _decode_bz2_lzma(read, bz2.BZ2Decompressor()))


_XZ_PRESET = 9 | lzma.PRESET_EXTREME


def _xz() -> CompressorSpec:
    def new_encoder(dictionary: bytes | None) -> Encoder:
        _no_dictionary(dictionary)
        return lzma.LZMACompressor(lzma.FORMAT_XZ, lzma.CHECK_CRC64, _XZ_PRESET)

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        _no_dictionary(dictionary)
        return lzma.compress(data, lzma.FORMAT_XZ, lzma.CHECK_CRC64, _XZ_PRESET)

    return CompressorSpec("xz-9e", "liblzma", LZMA_VERSION, "preset=9e format=xz check=crc64", new_encoder,
                          compress_one,
                          lambda read, dictionary: _decode_bz2_lzma(read, lzma.LZMADecompressor(lzma.FORMAT_XZ)))


def _zstd(name: str, level: int, *, long: bool = False, uses_dictionary: bool = False) -> CompressorSpec:
    def compressor(dictionary: bytes | None) -> zstandard.ZstdCompressor:
        if dictionary is not None and not uses_dictionary:
            raise ValueError(f"{name} takes no dictionary")
        dict_data = zstandard.ZstdCompressionDict(dictionary) if dictionary is not None else None
        if long:
            params = zstandard.ZstdCompressionParameters.from_level(
                level, enable_ldm=True, window_log=ZSTD_LONG_WINDOW_LOG)
            return zstandard.ZstdCompressor(compression_params=params, dict_data=dict_data)
        return zstandard.ZstdCompressor(level=level, dict_data=dict_data)

    # One-shot calls reuse a cached ZstdCompressor (its context survives between documents, as a caller of the
    # library would keep it); a stream gets its own, since a one-shot call on a shared context resets the stream.
    one_shot = functools.lru_cache(maxsize=4)(compressor)

    def new_encoder(dictionary: bytes | None) -> Encoder:
        return compressor(dictionary).compressobj()

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        return one_shot(dictionary).compress(data)

    setting = f"level={level} checksum=0" + (f" ldm=1 window_log={ZSTD_LONG_WINDOW_LOG}" if long else "")
    if uses_dictionary:
        setting += " dictionary=trained, 2-fold cross-fitted, size counted"
    return CompressorSpec(name, "zstandard", ZSTD_VERSION, setting, new_encoder, compress_one, _decode_zstd,
                          uses_dictionary=uses_dictionary)


def _brotli() -> CompressorSpec:
    def new_encoder(dictionary: bytes | None) -> Encoder:
        _no_dictionary(dictionary)
        c = brotli.Compressor(quality=11, lgwin=BROTLI_LGWIN)
        return _Adapter(c.process, c.finish)

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        _no_dictionary(dictionary)
        return brotli.compress(data, quality=11, lgwin=BROTLI_LGWIN)

    return CompressorSpec("brotli-11", "brotli", BROTLI_VERSION, f"quality=11 lgwin={BROTLI_LGWIN} mode=generic",
                          new_encoder, compress_one, lambda read, dictionary: _decode_brotli(read))


def _ppmd(order: int) -> CompressorSpec:
    def new_encoder(dictionary: bytes | None) -> Encoder:
        _no_dictionary(dictionary)
        e = pyppmd.Ppmd7Encoder(order, PPMD_MEMORY_BYTES)
        return _Adapter(e.encode, lambda: e.flush(endmark=True))

    def compress_one(data: bytes, dictionary: bytes | None) -> bytes:
        e = new_encoder(dictionary)
        return e.compress(data) + e.flush()

    return CompressorSpec(f"ppmd-o{order}", "pyppmd", PPMD_VERSION,
                          f"variant=H order={order} mem={PPMD_MEMORY_BYTES >> 20}MiB endmark=1",
                          new_encoder, compress_one, lambda read, dictionary: _decode_ppmd(read, order),
                          isolate_decoder=True)


COMPRESSORS: dict[str, CompressorSpec] = {spec.name: spec for spec in (
    _gzip(1), _gzip(6), _gzip(9), _bz2(), _xz(),
    _zstd("zstd-3", 3), _zstd("zstd-19", 19), _zstd("zstd-22-long", 22, long=True),
    _zstd("zstd-19-dict", 19, uses_dictionary=True),
    _brotli(), _ppmd(8), _ppmd(16),
)}


def get_compressor(name: str) -> CompressorSpec:
    try:
        return COMPRESSORS[name]
    except KeyError:
        close = difflib.get_close_matches(name, COMPRESSORS, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise InputError(f"unknown compressor {name!r}.{hint} Available: {', '.join(COMPRESSORS)}") from None


def compressed_size(name: str, data: bytes) -> int:
    """Bytes of the one-shot output, container included. Example: compressed_size("gzip-9", b"") == 20."""
    return len(COMPRESSORS[name].compress_one(data, None))


# ---------------------------------------------------------------------------------------------------------------
# Round-trip check: decode frames stored back to back in a file and hash the output.

@dataclass(frozen=True)
class DecodeResult:
    sha256: str  # frames_sha256 of the decoded frames; "" when the decode failed
    n_bytes: int
    seconds: float  # inside the decoder only
    error: str | None = None  # why the decode failed; None when it finished cleanly


class FramesHasher:
    """sha256 over (sha256(frame), len(frame)) of each frame in order: equal digests mean identical frames,
    boundaries included. Frames arrive in pieces (``update``) and are closed with ``end_frame``."""

    def __init__(self) -> None:
        self._outer = hashlib.sha256()
        self._inner = hashlib.sha256()
        self._n_frame = 0
        self.n_bytes = 0

    def update(self, piece: bytes) -> None:
        self._inner.update(piece)
        self._n_frame += len(piece)
        self.n_bytes += len(piece)

    def end_frame(self) -> None:
        self._outer.update(self._inner.digest())
        self._outer.update(self._n_frame.to_bytes(8, "little"))
        self._inner = hashlib.sha256()
        self._n_frame = 0

    def hexdigest(self) -> str:
        return self._outer.hexdigest()


def frames_sha256(frames: Iterable[bytes]) -> str:
    """The digest ``decode_frames`` reports, computed from the original units."""
    h = FramesHasher()
    for frame in frames:
        h.update(frame)
        h.end_frame()
    return h.hexdigest()


def decode_frames(spec: CompressorSpec, source: BinaryIO, frame_bytes: Sequence[int], frame_lengths: Sequence[int],
                  dictionaries: Sequence[bytes | None]) -> DecodeResult:
    """Decode the frames stored back to back in ``source`` from its start (sizes ``frame_bytes``) and hash them.

    ``frame_lengths`` are the expected decoded lengths (a frame that decodes to another length is an error; they are
    not given to the decoder). ``dictionaries[i]`` is frame i's dictionary, or a single entry for all frames. The
    decode runs in a child process when ``spec.isolate_decoder``; its failure, crash included, comes back as
    ``DecodeResult.error``.
    """
    source.seek(0)
    if spec.isolate_decoder:
        return _decode_in_child(spec, source, frame_bytes, frame_lengths, dictionaries)
    return _decode_here(spec, source, frame_bytes, frame_lengths, dictionaries)


def _decode_here(spec: CompressorSpec, source: BinaryIO, frame_bytes: Sequence[int], frame_lengths: Sequence[int],
                 dictionaries: Sequence[bytes | None]) -> DecodeResult:
    h = FramesHasher()
    seconds = 0.0
    try:
        for i, (size, length) in enumerate(zip(frame_bytes, frame_lengths, strict=True)):
            left = size

            def read(n: int) -> bytes:
                nonlocal left
                data = source.read(min(n, left))
                left -= len(data)
                return data

            n_before = h.n_bytes
            pieces = spec.decode(read, dictionaries[i] if len(dictionaries) > 1 else dictionaries[0])
            while True:
                t0 = time.perf_counter()
                piece = next(pieces, None)
                seconds += time.perf_counter() - t0
                if piece is None:
                    break
                h.update(piece)
            h.end_frame()
            if left:
                raise ValueError(f"frame {i}: the decoder stopped with {left} compressed bytes unread")
            if h.n_bytes - n_before != length:
                raise ValueError(f"frame {i}: decoded {h.n_bytes - n_before} bytes, expected {length}")
    except (ValueError, EOFError, OSError, zlib.error, lzma.LZMAError, zstandard.ZstdError, brotli.error,
            pyppmd.PpmdError) as exc:
        return DecodeResult("", h.n_bytes, seconds, f"{type(exc).__name__}: {exc}")
    return DecodeResult(h.hexdigest(), h.n_bytes, seconds)


def _decode_in_child(spec: CompressorSpec, source: BinaryIO, frame_bytes: Sequence[int],
                     frame_lengths: Sequence[int], dictionaries: Sequence[bytes | None]) -> DecodeResult:
    """The child reads, on stdin: the frame count (int64), the sizes, the lengths, then the frames."""
    if any(d is not None for d in dictionaries):
        raise ValueError("isolated decoders take no dictionary")
    # The package's parent on sys.path; the child imports only this module (no pandas, no torch).
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "mdlbench.baselines.compressors", spec.name],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(len(frame_bytes).to_bytes(8, "little"))
            proc.stdin.write(array.array("q", frame_bytes).tobytes())
            proc.stdin.write(array.array("q", frame_lengths).tobytes())
            while piece := source.read(PIECE_BYTES):
                proc.stdin.write(piece)
            proc.stdin.close()
        except BrokenPipeError:
            pass  # the child died; its exit status says how
        out = proc.stdout.read()
        proc.stdout.close()
        returncode = proc.wait()
        stderr.seek(0)
        message = stderr.read().decode(errors="replace").strip()[-300:]
    if returncode != 0:
        return DecodeResult("", 0, 0.0, f"decoder process exited with {returncode}: {message}")
    result = json.loads(out)
    return DecodeResult(result["sha256"], result["n_bytes"], result["seconds"], result["error"])


def _child_main(argv: list[str]) -> int:
    stdin = sys.stdin.buffer
    n = int.from_bytes(stdin.read(8), "little")
    sizes = array.array("q")
    sizes.frombytes(stdin.read(16 * n))
    r = _decode_here(COMPRESSORS[argv[0]], stdin, sizes[:n], sizes[n:], [None])
    print(json.dumps({"sha256": r.sha256, "n_bytes": r.n_bytes, "seconds": r.seconds, "error": r.error}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_child_main(sys.argv[1:]))

"""`mdlbench compress`: code a file with a model into an actual bitstream (.mdlz), proving its code length.

    mdlbench compress book.txt --model default -o book.txt.mdlz
    mdlbench compress book.txt --model uniform-bytes          # 8 bits per byte + header

stdout: one summary line (sizes, coded vs ideal bits). stderr: notes (fallback to raw bytes), speed, progress.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path

from mdlbench.errors import EXIT_OK, InputError
from mdlbench.scoring.models import DEVICES, DTYPES, UNIFORM_BYTES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", type=Path, help="file to compress (any bytes; '-' reads stdin)")
    add("--model", "-m", default="default",
        help=f"'default' (SmolLM2-135M GGUF), '{UNIFORM_BYTES}', a folder, a .gguf file, or a hub id")
    add("-o", "--output", type=Path, help="output file (default: INPUT.mdlz)")
    add("--window", type=int, help="tokens per forward pass (default: model context, at most 2048)")
    add("--stride", type=int, help="new tokens per window after the first (default: window // 2)")
    add("--first-token", choices=("bos", "uniform"), help="bos: condition token 0 on BOS (default); "
        "uniform: code it with log2|V| bits")
    add("--end", choices=("eos", "none"), help="eos: code an EOS after the text (default); none: do not")
    add("--dtype", choices=DTYPES, default="float32")
    add("--device", choices=DEVICES, default="cpu",
        help="decoding must run on the same device type (recorded in the file); default cpu")
    add("--threads", type=int, help="torch CPU threads (recorded; decompress uses the same number by default)")
    add("--revision", help="model revision (commit sha) for hub ids")
    add("--boundary-token", help="token that starts and ends documents (overrides the tokenizer's BOS/EOS)")
    add("--force", "-f", action="store_true", help="overwrite the output file")
    add("--quiet", action="store_true", help="no progress on stderr")


class ProgressLine:
    """`done/total symbols, tokens/s` on stderr every 2 s (0.2 s on a terminal)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled = label, enabled
        self.start = self.last = time.perf_counter()
        self.interval = 0.2 if sys.stderr.isatty() else 2.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            rate = done / max(now - self.start, 1e-9)
            end = "\r" if sys.stderr.isatty() else "\n"
            print(f"{self.label}: {done:,}/{total:,} tokens, {rate:,.1f} tokens/s", end=end, file=sys.stderr)

    def close(self) -> None:
        if self.enabled and sys.stderr.isatty() and self.last > self.start:
            print(file=sys.stderr)


def set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads {threads}: must be >= 1")
    import torch

    torch.set_num_threads(threads)


def write_output(path: Path, data: bytes, force: bool) -> None:
    """Write atomically (temporary file + rename); refuse to overwrite without --force."""
    if path.exists() and not force:
        raise InputError(f"{path} exists; pass --force to overwrite it")
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InputError(f"{path}: cannot write ({exc.strerror})") from exc


def read_input(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def main(args: argparse.Namespace) -> int:
    from mdlbench.coding.coder import compress_bytes
    from mdlbench.coding.container import SUFFIX

    data = read_input(args.input)
    output = args.output or (Path(f"{args.input}{SUFFIX}") if str(args.input) != "-" else None)
    if output is None:
        raise InputError("reading stdin: pass -o FILE.mdlz")
    if output.exists() and not args.force:
        raise InputError(f"{output} exists; pass --force to overwrite it")
    set_threads(args.threads)
    if args.model == UNIFORM_BYTES:
        model = UNIFORM_BYTES
    else:
        from mdlbench.scoring.models import load_model

        model = load_model(args.model, revision=args.revision, dtype=args.dtype, device=args.device,
                           boundary_token=args.boundary_token)
    progress = ProgressLine("compress", not args.quiet)
    packed = compress_bytes(model, data, window=args.window, stride=args.stride, first_token=args.first_token,
                            end=args.end, progress=progress)
    progress.close()
    write_output(output, packed.blob, args.force)
    if packed.fallback_reason:
        print(f"note: {packed.fallback_reason}; stored the {len(data):,} bytes raw (8 bits per byte) instead of "
              "coding them with the model", file=sys.stderr)
    n = len(data)
    bpb = f"{packed.coded_bits / n:.4f}" if n else "—"
    print(f"{args.input} -> {output}: {n:,} bytes -> {len(packed.blob):,} bytes (header {packed.header_bytes:,} + "
          f"payload {packed.payload_bytes:,}); method {packed.method}; coded {packed.coded_bits:,} bits vs ideal "
          f"{packed.ideal_bits:,.1f} bits (overhead {packed.coded_bits - packed.ideal_bits:+,.1f}); payload "
          f"{bpb} bits/byte")
    rate = packed.n_symbols / packed.seconds if packed.seconds > 0 else float("nan")
    print(f"compress: {packed.n_symbols:,} symbols in {packed.seconds:.2f} s ({rate:,.1f} tokens/s)",
          file=sys.stderr)
    return EXIT_OK

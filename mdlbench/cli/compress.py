"""`mdlbench compress`: code a file with a model into an actual bitstream (.mdlz), proving its code length.

    mdlbench compress book.txt --model default -o book.txt.mdlz
    mdlbench compress book.txt --model uniform-bytes          # 8 bits per byte + header

stdout: one summary line (sizes, coded vs ideal bits). stderr: notes (fallback to raw bytes), speed, progress.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from mdlbench.cli.args import add_model_args, add_progress_args, add_windowing_args, positive_int
from mdlbench.config import UNIFORM_BYTES, ProgressMode
from mdlbench.errors import EXIT_OK, InputError
from mdlbench.fsio import write_bytes_atomic
from mdlbench.progress import Progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", type=Path, help="file to compress (any bytes; '-' reads stdin)")
    add_model_args(parser, repeatable=False, default="default", device_default="cpu")
    add("-o", "--output", type=Path, help="output file (default: INPUT.mdlz)")
    add_windowing_args(parser)
    add("--threads", type=positive_int, help="torch CPU threads (recorded; decompress uses the same number by default)")
    add("--force", "-f", action="store_true", help="overwrite the output file")
    add_progress_args(parser)


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
    try:
        write_bytes_atomic(path, data)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from exc


def read_input(path: Path) -> bytes:
    if str(path) == "-":
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def symbol_progress(label: str, mode: ProgressMode) -> tuple[Progress, Callable[[int, int], None]]:
    """A Progress and the (symbols done, symbols total) callback the coder calls per symbol."""
    progress = Progress(label, mode=mode)

    def on_symbol(done: int, total: int) -> None:
        progress.totals["tokens"] = total
        progress.update(n_tokens=done - progress.done["tokens"])

    return progress, on_symbol


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

        model = load_model(args.model, revision=args.model_revision, dtype=args.dtype, device=args.device,
                           boundary_token=args.boundary_token, trust_remote_code=args.trust_remote_code)
    progress, on_symbol = symbol_progress("compress", args.progress)
    packed = compress_bytes(model, data, window=args.window, stride=args.stride, first_token=args.first_token,
                            end=args.end, progress=on_symbol)
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

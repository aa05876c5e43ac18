"""`mdlbench decompress`: decode a .mdlz file written by `mdlbench compress`, checking it byte for byte.

    mdlbench decompress book.txt.mdlz -o book.txt            # the local model recorded in the file, if its
                                                             # weights' sha256 matches (a hub id needs --model)
    mdlbench decompress book.txt.mdlz -o book.txt --model ./my-model-folder

The model's weights and tokenizer must be the ones that compressed the file (their sha256 are checked first);
dtype, device and thread count default to the recorded ones. The output is written only after its length and
sha256 match the original's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mdlbench.cli.args import add_progress_args, positive_int
from mdlbench.cli.compress import read_input, set_threads, symbol_progress, write_output
from mdlbench.config import DEFAULT_MODEL, DEVICES, UNIFORM_BYTES
from mdlbench.errors import EXIT_OK, InputError
from mdlbench.scoring.identity import ModelIdentity, identify_model


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("input", type=Path, help="a .mdlz file ('-' reads stdin)")
    add("-o", "--output", type=Path, help="output file (default: INPUT without .mdlz; '-' writes stdout)")
    add("--model", "-m", help="the model that compressed the file (default: the spec recorded in it)")
    add("--device", choices=DEVICES, help="default: the device type recorded in the file")
    add("--threads", type=positive_int, help="torch CPU threads (default: the number recorded in the file)")
    add("--force", "-f", action="store_true", help="overwrite the output file")
    add_progress_args(parser)


def _output_path(args: argparse.Namespace) -> Path:
    from mdlbench.coding.container import SUFFIX

    if args.output is not None:
        return args.output
    name = str(args.input)
    if name == "-" or not name.endswith(SUFFIX) or len(name) == len(SUFFIX):
        raise InputError(f"{args.input}: cannot derive the output name (no {SUFFIX} suffix); pass -o OUTPUT")
    return Path(name[: -len(SUFFIX)])


def trusted_model(identity: ModelIdentity, recorded: dict[str, Any], source: Path) -> None:
    """A file names a local model to load; decompress loads it without ``--model`` only when its weights (hashed
    from the files, before anything loads) are the ones that compressed the file."""
    if identity.weights_sha256 != recorded.get("sha256"):
        raise InputError(f"{source} names the model {identity.spec!r}, but the weights there have sha256 "
                         f"{identity.weights_sha256[:12]}…, not the {str(recorded.get('sha256'))[:12]}… that "
                         "compressed the file; pass --model with the model that did")


def main(args: argparse.Namespace) -> int:
    from mdlbench.coding.coder import decompress_bytes, environment_warnings, read

    blob = read_input(args.input)
    output = _output_path(args)
    if str(output) != "-" and output.exists() and not args.force:
        raise InputError(f"{output} exists; pass --force to overwrite it")
    meta = read(blob, name=str(args.input)).meta
    recorded = meta["model"]
    model = None
    if meta["method"] == "model":
        env = meta.get("environment", {})
        set_threads(args.threads if args.threads is not None else env.get("torch_threads"))
        spec = args.model or recorded.get("spec")
        if spec == UNIFORM_BYTES:
            raise InputError(f"{args.input} was coded with model {recorded.get('name')!r}, not {UNIFORM_BYTES}; "
                             f"pass --model {recorded.get('spec')!r}")
        from mdlbench.scoring.models import load_identified

        if args.model is None and (recorded.get("format") == "hub" or not (
                spec == DEFAULT_MODEL or Path(spec).exists())):
            raise InputError(f"{args.input} names the model {spec!r}, which is not a local file or folder here; "
                             "decompress does not fetch a model named by a file: pass --model with the model that "
                             "compressed it")
        try:
            identity = identify_model(spec, revision=recorded.get("revision") or None,
                                      boundary_token=recorded.get("boundary_token"))
        except InputError as exc:
            hint = "" if args.model else " (the spec recorded in the file; pass --model to point at the model)"
            raise InputError(f"{exc}{hint}") from exc
        if args.model is None:
            trusted_model(identity, recorded, args.input)
        model = load_identified(identity, dtype=recorded.get("dtype", "float32"),
                                device=args.device or env.get("device", "cpu"))
        for warning in environment_warnings(meta, model):
            print(f"warning: {warning}", file=sys.stderr)
    elif args.model and args.model != recorded.get("spec") and args.progress != "none":
        print(f"note: {args.input} is stored as {meta['method']}; --model is not needed and was not used",
              file=sys.stderr)
    progress, on_symbol = symbol_progress("decompress", args.progress)
    result = decompress_bytes(blob, model, name=str(args.input), progress=on_symbol)
    progress.close()
    if str(output) == "-":
        sys.stdout.buffer.write(result.data)
        sys.stdout.buffer.flush()
    else:
        write_output(output, result.data, args.force)
        print(f"{args.input} -> {output}: {len(result.data):,} bytes, method {meta['method']}, sha256 verified")
    if meta.get("fallback_reason"):
        print(f"note: the file holds raw bytes ({meta['fallback_reason']})", file=sys.stderr)
    rate = result.n_symbols / result.seconds if result.seconds > 0 else float("nan")
    print(f"decompress: {result.n_symbols:,} symbols in {result.seconds:.2f} s ({rate:,.1f} tokens/s)",
          file=sys.stderr)
    return EXIT_OK

"""The `mdlbench` command. Subcommands are a plain mapping name -> module with add_arguments(parser) and main(args).

Exit codes: 0 done; 2 bad input (nothing computed, nothing written); 3 a run failed.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from mdlbench import __version__
from mdlbench.errors import EXIT_BAD_INPUT, MdlbenchError

DEFAULT_OUT = "mdlbench-results"

# name -> (module, one-line help). Modules are imported only when their subcommand runs (torch is slow to import).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mdlbench.cli_run", "score corpora under models and write Parquet tables (default: sample × default)"),
    "manifest": ("mdlbench.cli_manifest", "create a pinned corpus manifest (sha256 of every file)"),
    "baselines": ("mdlbench.baselines.cli", "classical compressor baselines on a corpus"),
    "prequential": ("mdlbench.prequential.cli", "prequential (online) MDL of a corpus under a learning model"),
    "lens": ("mdlbench.lens.cli", "what each part of a model costs in bits: component codes, FFN activity, pruning"),
    "compress": ("mdlbench.coding.cli_compress", "compress a file with a model and a range coder (.mdlz)"),
    "decompress": ("mdlbench.coding.cli_decompress", "decompress a .mdlz file"),
    "report": ("mdlbench.report.cli", "Markdown/HTML report with figures from a results folder"),
    "compare": ("mdlbench.report.cli", "paired bits/byte difference of two runs on the same documents"),
    "ls": ("mdlbench.cli_admin", "list the runs in a results folder"),
    "gc": ("mdlbench.cli_admin", "remove incomplete leftovers from a results folder"),
    "merge": ("mdlbench.cli_admin", "assemble sharded runs once all their shards are done"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mdlbench", description="Code lengths of text under language models.")
    parser.add_argument("--version", action="version", version=f"mdlbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith("mdlbench"):
                continue  # a feature module not present in this build
            raise
        # A module serving one subcommand exposes add_arguments/main; one serving several, add_<name>_arguments
        # and <name>_main.
        add = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        entry = getattr(module, f"{name}_main", None) or module.main
        add(sub_parser)
        sub_parser.set_defaults(_main=entry, _parser=sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we tokenize in our own thread
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return int(args._main(args) or 0)
    except MdlbenchError as exc:
        print(f"mdlbench {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("mdlbench: interrupted; nothing was committed for the run in progress", file=sys.stderr)
        return 130


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table (numbers right-aligned) for the console."""
    def cell(v: object) -> str:
        if isinstance(v, float):
            return "—" if math.isnan(v) else f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(header)]
    numeric = [all(isinstance(r[i], (int, float)) for r in rows) for i in range(len(header))]

    def fmt(vals: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(vals, widths, numeric, strict=True))

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(r) for r in cells)])


def default_out_dir() -> Path:
    return Path(os.environ.get("MDLBENCH_OUT", DEFAULT_OUT))

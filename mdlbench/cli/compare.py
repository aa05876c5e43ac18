"""`mdlbench compare RUN_A RUN_B`: the paired bits/byte difference of two runs on the documents they share."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from mdlbench.cli.fmt import format_table
from mdlbench.config import default_out_dir
from mdlbench.errors import EXIT_OK, InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run_a", metavar="RUN_A", help="run id (or unique prefix, or a model name with one run)")
    add("run_b", metavar="RUN_B", help="the run to compare against, on the same documents")
    add("--out", "--out-dir", dest="out", type=Path, default=None,
        help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--samples", type=int, default=None, help="bootstrap resamples (default: RUN_A's bootstrap_samples)")
    add("--seed", type=int, default=None, help="bootstrap seed (default: RUN_A's seed)")
    add("--json", action="store_true", help="print one JSON object instead of the table")


def main(args: argparse.Namespace) -> int:
    from mdlbench.report.data import compare_runs, load_results, resolve_runs

    out_dir = args.out or default_out_dir()
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples {args.samples}: give a positive number of bootstrap resamples")
    res = load_results(out_dir)
    run_a, run_b = resolve_runs(res.runs, [args.run_a, args.run_b], out_dir)
    comp = compare_runs(res, run_a, run_b, n_samples=args.samples, seed=args.seed)
    items = [comp.overall, *comp.by_domain]
    if args.json:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        print(json.dumps({"run_a": run_a, "run_b": run_b, "model_a": comp.model_a, "model_b": comp.model_b,
                          "corpus": comp.corpus, "n_unmatched": comp.n_unmatched, "bootstrap_samples": comp.n_samples,
                          "seed": comp.seed, "level": 0.95,
                          "rows": [{"documents": d.label, "n_docs": d.n_docs, "n_bytes": d.n_bytes,
                                    "bits_per_byte_a": num(d.bpb_a), "bits_per_byte_b": num(d.bpb_b),
                                    "delta_bits_per_byte": num(d.delta), "ci_low": num(d.ci_low),
                                    "ci_high": num(d.ci_high)} for d in items]}))
        return EXIT_OK
    print(f"A  {run_a}  {comp.model_a}")
    print(f"B  {run_b}  {comp.model_b}")
    print(f"corpus {comp.corpus}: {comp.overall.n_docs} documents matched on (corpus_sha256, doc_id), "
          f"{comp.overall.n_bytes:,} bytes; {comp.n_unmatched} unmatched")
    print(f"ΔR = Σ(b_A − b_B) / Σ n_bytes; paired document bootstrap, {comp.n_samples:,} resamples, seed {comp.seed} "
          "(same indices for A and B); 95% CI")
    print()
    print(format_table(["documents", "D", "bytes", "R_A bits/byte", "R_B bits/byte", "ΔR bits/byte", "CI low",
                        "CI high"],
                       [[d.label, d.n_docs, d.n_bytes, d.bpb_a, d.bpb_b, d.delta, d.ci_low, d.ci_high]
                        for d in items]))
    if comp.n_unmatched:
        print(f"note: {comp.n_unmatched} documents were scored by only one of the runs and are left out",
              file=sys.stderr)
    return EXIT_OK

"""`mdlbench report RESULTS_DIR` (Markdown + PNG, optionally one HTML file) and `mdlbench compare RUN_A RUN_B`."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from mdlbench.cli import default_out_dir, format_table
from mdlbench.errors import EXIT_OK, InputError


def _run_list(text: str) -> list[str]:
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("give run ids separated by commas")
    return ids


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("results", type=Path, metavar="RESULTS_DIR", help="a results folder written by `mdlbench run --out`")
    add("--out", type=Path, default=None, help="report folder (default reports/<name of RESULTS_DIR>); "
        "report.md and figures/ are written there")
    add("--runs", type=_run_list, metavar="ID,...", help="only these runs (ids, unique id prefixes or model names)")
    add("--corpus", metavar="NAME", help="only runs on this corpus")
    add("--html", action="store_true", help="also write report.html, one self-contained file (figures inlined; "
        "with the byte-aligned difference of two runs when both have per-token rows)")
    add("--context-domains", action="store_true", help="also draw the context curves per domain")
    add("--regenerate-command", metavar="CMD",
        help="the command written on the report's first line (default: this `mdlbench report` command)")


def _report_command(args: argparse.Namespace, out: Path) -> str:
    parts = ["mdlbench", "report", str(args.results), "--out", str(out)]
    if args.runs:
        parts += ["--runs", ",".join(args.runs)]
    if args.corpus:
        parts += ["--corpus", args.corpus]
    if args.html:
        parts.append("--html")
    if args.context_domains:
        parts.append("--context-domains")
    return shlex.join(parts)


def report_main(args: argparse.Namespace) -> int:
    from mdlbench.report import write_report

    out = args.out or Path("reports") / (Path(args.results).resolve().name or "report")
    paths = write_report(args.results, out, run_ids=args.runs, corpus=args.corpus, html=args.html,
                         command=args.regenerate_command or _report_command(args, out),
                         context_domains=args.context_domains)
    for p in paths:
        print(p)
    return EXIT_OK


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run_a", metavar="RUN_A", help="run id (or unique prefix, or a model name with one run)")
    add("run_b", metavar="RUN_B", help="the run to compare against, on the same documents")
    add("--out-dir", type=Path, default=None, help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--samples", type=int, default=None, help="bootstrap resamples (default: RUN_A's bootstrap_samples)")
    add("--seed", type=int, default=None, help="bootstrap seed (default: RUN_A's seed)")
    add("--json", action="store_true", help="print one JSON object instead of the table")
    add("--spans", action="store_true", help="byte-aligned attribution: write the span_diff table (both runs need "
        "--per-token rows) and print it by span class and the spans that differ most")
    add("--corpus", metavar="SPEC", help="with --spans: where the texts are, if the corpus the runs recorded moved")


def compare_main(args: argparse.Namespace) -> int:
    from mdlbench.report.data import compare_runs, load_results, resolve_runs

    out_dir = args.out_dir or default_out_dir()
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples {args.samples}: give a positive number of bootstrap resamples")
    res = load_results(out_dir)
    run_a, run_b = resolve_runs(res.runs, [args.run_a, args.run_b], out_dir)
    comp = compare_runs(res, run_a, run_b, n_samples=args.samples, seed=args.seed)
    items = [comp.overall, *comp.by_domain]
    spans = None
    if args.spans:  # validates both runs' per-token rows and the corpus texts, then writes span_diff
        from mdlbench.spans.cli import span_comparison

        spans = span_comparison(res, run_a, run_b, corpus=args.corpus, n_samples=comp.n_samples, seed=comp.seed)
    if args.json:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        print(json.dumps({"run_a": run_a, "run_b": run_b, "model_a": comp.model_a, "model_b": comp.model_b,
                          "corpus": comp.corpus, "n_unmatched": comp.n_unmatched, "bootstrap_samples": comp.n_samples,
                          "seed": comp.seed, "level": 0.95,
                          "rows": [{"documents": d.label, "n_docs": d.n_docs, "n_bytes": d.n_bytes,
                                    "bits_per_byte_a": num(d.bpb_a), "bits_per_byte_b": num(d.bpb_b),
                                    "delta_bits_per_byte": num(d.delta), "ci_low": num(d.ci_low),
                                    "ci_high": num(d.ci_high)} for d in items],
                          **({"spans": spans.as_json()} if spans is not None else {})}))
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
    if spans is not None:
        print()
        print(spans.console())
    if comp.n_unmatched:
        print(f"note: {comp.n_unmatched} documents were scored by only one of the runs and are left out",
              file=sys.stderr)
    return EXIT_OK

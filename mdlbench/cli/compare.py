"""`mdlbench compare RUN_A RUN_B`: the paired bits/byte difference of two runs on the documents they share."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdlbench.cli.fmt import format_table
from mdlbench.config import default_out_dir
from mdlbench.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    from mdlbench.spans.compare import SpanComparison


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("run_a", metavar="RUN_A", help="run id (or unique prefix, or a model name with one run)")
    add("run_b", metavar="RUN_B", help="the run to compare against, on the same documents")
    add("--out", "--out-dir", dest="out", type=Path, default=None,
        help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--samples", type=int, default=None, help="bootstrap resamples (default: RUN_A's bootstrap_samples)")
    add("--seed", type=int, default=None, help="bootstrap seed (default: RUN_A's seed)")
    add("--json", action="store_true", help="print one JSON object instead of the table")
    add("--spans", action="store_true", help="byte-aligned attribution: write the span_diff table (both runs need "
        "--per-token rows) and print it by span class and the spans that differ most")
    add("--corpus", metavar="SPEC", help="with --spans: where the texts are, if the corpus the runs recorded moved")


def main(args: argparse.Namespace) -> int:
    from mdlbench.report.data import compare_runs, load_results, resolve_runs

    out_dir = args.out or default_out_dir()
    if args.samples is not None and args.samples < 1:
        raise InputError(f"--samples {args.samples}: give a positive number of bootstrap resamples")
    res = load_results(out_dir)
    run_a, run_b = resolve_runs(res.runs, [args.run_a, args.run_b], out_dir)
    comp = compare_runs(res, run_a, run_b, n_samples=args.samples, seed=args.seed)
    items = [comp.overall, *comp.by_domain]
    spans = None
    if args.spans:  # validates both runs' per-token rows and the corpus texts, then writes span_diff
        from mdlbench.spans.compare import span_comparison

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
        print(span_console(spans))
    if comp.n_unmatched:
        print(f"note: {comp.n_unmatched} documents were scored by only one of the runs and are left out",
              file=sys.stderr)
    return EXIT_OK


def span_console(spans: SpanComparison) -> str:
    """The console listing of ``compare --spans``: aggregates by span class, then the spans that differ most."""
    from mdlbench.spans.refine import escape_text

    def rows(items: list[Any]) -> list[list[object]]:
        return [[a.label, a.n_docs, a.n_spans, a.n_bytes, a.bpb_a, a.bpb_b, a.delta, a.ci_low, a.ci_high,
                 a.delta_bits] for a in items]

    header = ["span class", "D", "spans", "bytes", "R_A bits/byte", "R_B bits/byte", "ΔR bits/byte", "CI low",
              "CI high", "Δ bits"]
    lines = [f"span_diff: {spans.n_spans:,} spans over {spans.n_docs} documents -> {spans.path}",
             "Spans are cut at every byte offset that is a token boundary in both runs; per document they add up "
             "to each run's bits, so by domain they give the table above. By span class (spans.refine defines the "
             "classes), with the same paired document bootstrap (95% CI; — when fewer than 2 documents hold the "
             "class; D = documents holding it):", "", format_table(header, rows(spans.by_class))]
    for title, df in ((f"{len(spans.gains)} spans where A gains most over B (Δ bits < 0)", spans.gains),
                      (f"{len(spans.losses)} spans where A loses most to B (Δ bits > 0)", spans.losses)):
        lines += ["", title]
        lines.append(format_table(["doc_id", "bytes", "Δ bits", "bits A", "bits B", "text"],
                                  [[escape_text(str(r.doc_id), 24), f"{r.span_start}-{r.span_end}",
                                    float(r.delta_bits), float(r.bits_a), float(r.bits_b),
                                    "(end of document)" if r.span_start == r.span_end else
                                    '"' + escape_text(str(r.text), 40) + '"'] for r in df.itertuples()])
                     if len(df) else "(none)")
    return "\n".join(lines)

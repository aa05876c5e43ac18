"""`mdlbench view RESULTS_DIR --run A [--against B] [--doc ID ...] -o page.html`, and the `--spans` part of
`mdlbench compare` (the span_diff table, its aggregates and the console listing)."""

from __future__ import annotations

import argparse
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.errors import EXIT_OK, InputError

TOP_SPANS = 20
DEFAULT_VIEW_DOCS = 5


# ------------------------------------------------------------------------------------------------ compare --spans


@dataclass
class SpanComparison:
    run_a: str
    run_b: str
    path: Path
    n_spans: int
    n_docs: int
    by_domain: list[Any]
    by_class: list[Any]
    gains: Any  # DataFrame
    losses: Any

    def as_json(self) -> dict[str, Any]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        def agg(a: Any) -> dict[str, Any]:
            return {"label": a.label, "n_docs": a.n_docs, "n_spans": a.n_spans, "n_bytes": a.n_bytes,
                    "bits_a": a.bits_a, "bits_b": a.bits_b, "delta_bits": a.delta_bits,
                    "bits_per_byte_a": num(a.bpb_a), "bits_per_byte_b": num(a.bpb_b),
                    "delta_bits_per_byte": num(a.delta), "ci_low": num(a.ci_low), "ci_high": num(a.ci_high)}

        def spans(df: Any) -> list[dict[str, Any]]:
            return [{"doc_id": r.doc_id, "span_start": int(r.span_start), "span_end": int(r.span_end), "text": r.text,
                     "bits_a": r.bits_a, "bits_b": r.bits_b, "delta_bits": r.delta_bits} for r in df.itertuples()]

        return {"table": str(self.path), "n_spans": self.n_spans, "n_docs": self.n_docs,
                "by_domain": [agg(a) for a in self.by_domain], "by_class": [agg(a) for a in self.by_class],
                "top_gains": spans(self.gains), "top_losses": spans(self.losses)}

    def console(self) -> str:
        from mdlbench.cli import format_table
        from mdlbench.spans.refine import escape_text

        def rows(items: list[Any]) -> list[list[object]]:
            return [[a.label, a.n_docs, a.n_spans, a.n_bytes, a.bpb_a, a.bpb_b, a.delta, a.ci_low, a.ci_high,
                     a.delta_bits] for a in items]

        header = ["span class", "D", "spans", "bytes", "R_A bits/byte", "R_B bits/byte", "ΔR bits/byte", "CI low",
                  "CI high", "Δ bits"]
        lines = [f"span_diff: {self.n_spans:,} spans over {self.n_docs} documents -> {self.path}",
                 "Spans are cut at every byte offset that is a token boundary in both runs; per document they add up "
                 "to each run's bits, so by domain they give the table above. By span class (spans.refine defines the "
                 "classes), with the same paired document bootstrap (95% CI; — when fewer than 2 documents hold the "
                 "class; D = documents holding it):", "", format_table(header, rows(self.by_class))]
        for title, df in ((f"{TOP_SPANS} spans where A gains most over B (Δ bits < 0)", self.gains),
                          (f"{TOP_SPANS} spans where A loses most to B (Δ bits > 0)", self.losses)):
            lines += ["", title]
            lines.append(format_table(["doc_id", "bytes", "Δ bits", "bits A", "bits B", "text"],
                                      [[escape_text(str(r.doc_id), 24), f"{r.span_start}-{r.span_end}",
                                        float(r.delta_bits), float(r.bits_a), float(r.bits_b),
                                        "(end of document)" if r.span_start == r.span_end else
                                        '"' + escape_text(str(r.text), 40) + '"'] for r in df.itertuples()])
                         if len(df) else "(none)")
        return "\n".join(lines)


def span_comparison(res: Any, run_a: str, run_b: str, *, corpus: str | None, n_samples: int,
                    seed: int) -> SpanComparison:
    """Validate, cut, aggregate, then write the pair's span_diff partition (nothing is written on bad input)."""
    from mdlbench.spans import diff
    from mdlbench.spans.texts import run_texts

    runs = res.runs.set_index("run_id")
    for rid in (run_a, run_b):  # both refusals come before reading any corpus
        diff.check_run_tokens(res.out_dir, {"run_id": rid, "model": runs.loc[rid, "model"]})
    docs = diff.pair_documents(res, run_a, run_b)
    texts = run_texts({**runs.loc[run_a].to_dict(), "run_id": run_a}, set(docs["doc_id"]), corpus)
    spans = diff.build_spans(res, run_a, run_b, texts)
    frame = diff.frame_of(run_a, run_b, spans)
    by_domain, by_class = diff.aggregates(frame, n_samples=n_samples, seed=seed)
    gains, losses = diff.extremes(frame, TOP_SPANS)
    path = diff.write_span_diff(res.out_dir, run_a, run_b, spans)
    return SpanComparison(run_a, run_b, path, len(frame), len(spans), by_domain, by_class, gains, losses)


# ------------------------------------------------------------------------------------------------ view


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("results", type=Path, metavar="RESULTS_DIR", help="a results folder with per-token rows (`run --per-token`)")
    add("--run", required=True, metavar="A", help="run id (or unique prefix, or a model name with one run)")
    add("--against", metavar="B", help="colour by the difference A − B on the spans both runs' tokens share")
    add("--doc", nargs="+", action="extend", metavar="ID", help="documents to show (default: the "
        f"{DEFAULT_VIEW_DOCS} with the largest |Δ bits| against B, or the first {DEFAULT_VIEW_DOCS} of A)")
    add("--top", type=int, default=DEFAULT_VIEW_DOCS, metavar="N", help="how many documents without --doc")
    add("--corpus", metavar="SPEC", help="where the texts are, when the corpus the runs recorded has moved")
    add("-o", "--output", type=Path, required=True, metavar="PAGE.html", help="the HTML file to write")


def default_documents(pair: Any, against: bool, top: int) -> list[str]:
    """Documents a page shows by default: the ``top`` with the largest |Δ bits| (ties: corpus order), or the first
    ``top`` of the run."""
    if against:
        order = pair.assign(absdelta=(pair["bits_a"] - pair["bits_b"]).abs()).sort_values(
            "absdelta", ascending=False, kind="stable")
        return order["doc_id"].astype(str).head(top).tolist()
    return pair["doc_id"].astype(str).head(top).tolist()


def build_view(res: Any, run_a: str, run_b: str | None, doc_ids: list[str] | None, *, top: int = DEFAULT_VIEW_DOCS,
               corpus: str | None = None) -> tuple[str, list[str]]:
    """(the page's HTML (see spans.page), the documents shown); InputError for a run without per-token rows or
    unknown documents."""
    from mdlbench.spans import diff
    from mdlbench.spans.page import RunLabel, render_page
    from mdlbench.spans.texts import run_texts

    runs = res.runs.set_index("run_id")
    other = run_b if run_b is not None else run_a
    for rid in dict.fromkeys((run_a, other)):
        diff.check_run_tokens(res.out_dir, {"run_id": rid, "model": runs.loc[rid, "model"]})
    pair = diff.pair_documents(res, run_a, other)
    if doc_ids:
        known = set(pair["doc_id"].astype(str))
        missing = [d for d in doc_ids if d not in known]
        if missing:
            sample = ", ".join(sorted(known)[:8])
            raise InputError(f"--doc {missing[0]!r}: not a document of run {run_a}"
                             + (f" shared with {run_b}" if run_b else "") + f"; ids look like: {sample}")
        chosen = list(dict.fromkeys(doc_ids))
    else:
        chosen = default_documents(pair, run_b is not None, top)
    texts = run_texts({**runs.loc[run_a].to_dict(), "run_id": run_a}, set(chosen), corpus)
    spans = diff.build_spans(res, run_a, other, texts, chosen)
    labels = {rid: RunLabel(rid, str(runs.loc[rid, "model"])) for rid in (run_a, other)}
    return render_page(spans, corpus=str(runs.loc[run_a, "corpus"]), run_a=labels[run_a],
                       run_b=labels[run_b] if run_b is not None else None), chosen


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    from mdlbench.report.data import load_results, resolve_runs

    if args.top < 1:
        raise InputError(f"--top {args.top}: give a positive number of documents")
    if args.output.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"-o {args.output}: the page is HTML; give a file name ending in .html")
    res = load_results(args.results)
    wanted = [args.run] + ([args.against] if args.against else [])
    ids = resolve_runs(res.runs, wanted, args.results)
    page, shown = build_view(res, ids[0], ids[1] if args.against else None, args.doc, top=args.top,
                             corpus=args.corpus)
    write_atomic(args.output, page)
    print(args.output)
    if not args.doc:
        how = "largest |Δ bits| against B" if args.against else "first in corpus order"
        print(f"note: showing {len(shown)} documents ({how}): {', '.join(shown)}; choose with --doc ID ... or --top N",
              file=sys.stderr)
    return EXIT_OK

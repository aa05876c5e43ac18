"""`mdlbench view RESULTS_DIR --run A [--against B] [--doc ID ...] -o page.html`: one self-contained HTML page of a
run's bits on the text, or of two runs' difference."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mdlbench.cli.args import positive_int
from mdlbench.errors import EXIT_OK, InputError
from mdlbench.spans.view import DEFAULT_VIEW_DOCS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("results", type=Path, metavar="RESULTS_DIR", help="a results folder with per-token rows (`run --per-token`)")
    add("--run", required=True, metavar="A", help="run id (or unique prefix, or a model name with one run)")
    add("--against", metavar="B", help="colour by the difference A − B on the spans both runs' tokens share")
    add("--doc", nargs="+", action="extend", metavar="ID", help="documents to show (default: the "
        f"{DEFAULT_VIEW_DOCS} with the largest |Δ bits| against B, or the first {DEFAULT_VIEW_DOCS} of A)")
    add("--top", type=positive_int, default=DEFAULT_VIEW_DOCS, metavar="N", help="how many documents without --doc")
    add("--corpus", metavar="SPEC", help="where the texts are, when the corpus the runs recorded has moved")
    add("-o", "--output", type=Path, required=True, metavar="PAGE.html", help="the HTML file to write")


def main(args: argparse.Namespace) -> int:
    from mdlbench.fsio import write_text_atomic
    from mdlbench.report.data import load_results, resolve_runs
    from mdlbench.spans.view import build_view

    if args.output.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"-o {args.output}: the page is HTML; give a file name ending in .html")
    res = load_results(args.results)
    wanted = [args.run] + ([args.against] if args.against else [])
    ids = resolve_runs(res.runs, wanted, args.results)
    page, shown = build_view(res, ids[0], ids[1] if args.against else None, args.doc, top=args.top,
                             corpus=args.corpus)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output, page)
    print(args.output)
    if not args.doc:
        how = "largest |Δ bits| against B" if args.against else "first in corpus order"
        print(f"note: showing {len(shown)} documents ({how}): {', '.join(shown)}; choose with --doc ID ... or --top N",
              file=sys.stderr)
    return EXIT_OK

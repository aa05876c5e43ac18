"""`mdlbench report [DIR] [-o REPORT]`: a Markdown report with PNG figures (optionally one HTML file) from the tables
of a results folder (DIR, default ./mdlbench-results or $MDLBENCH_OUT)."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from mdlbench.config import default_out_dir
from mdlbench.errors import EXIT_OK


def _run_list(text: str) -> list[str]:
    ids = [t.strip() for t in text.split(",") if t.strip()]
    if not ids:
        raise argparse.ArgumentTypeError("give run ids separated by commas")
    return ids


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("dir", type=Path, nargs="?", metavar="DIR",
        help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("-o", "--out", type=Path, default=None, metavar="REPORT",
        help="report folder (default reports/<name of the results folder>); report.md and figures/ go there")
    add("--runs", type=_run_list, metavar="ID,...", help="only these runs (ids, unique id prefixes or model names)")
    add("--corpus", metavar="NAME", help="only runs on this corpus")
    add("--html", action="store_true", help="also write report.html, one self-contained file (figures inlined; "
        "with the byte-aligned difference of two runs when both have per-token rows)")
    add("--context-domains", action="store_true", help="also draw the context curves per domain")
    add("--regenerate-command", metavar="CMD",
        help="the command written on the report's first line (default: this `mdlbench report` command)")


def _report_command(results: Path, args: argparse.Namespace, out: Path) -> str:
    parts = ["mdlbench", "report", str(results), "--out", str(out)]
    if args.runs:
        parts += ["--runs", ",".join(args.runs)]
    if args.corpus:
        parts += ["--corpus", args.corpus]
    if args.html:
        parts.append("--html")
    if args.context_domains:
        parts.append("--context-domains")
    return shlex.join(parts)


def main(args: argparse.Namespace) -> int:
    from mdlbench.report import write_report

    results = args.dir or default_out_dir()
    out = args.out or Path("reports") / (results.resolve().name or "report")
    paths = write_report(results, out, run_ids=args.runs, corpus=args.corpus, html=args.html,
                         command=args.regenerate_command or _report_command(results, args, out),
                         context_domains=args.context_domains)
    for p in paths:
        print(p)
    return EXIT_OK

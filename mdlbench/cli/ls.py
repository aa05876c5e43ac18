"""`mdlbench ls DIR`: the runs in a results folder — complete, running, resumable or awaiting merge."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench import tables
from mdlbench.cli.fmt import format_table
from mdlbench.errors import InputError
from mdlbench.run.state import is_busy, runs_in_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="results folder")


def require_dir(path: Path) -> None:
    if not path.is_dir():
        raise InputError(f"{path}: no such results folder")


def main(args: argparse.Namespace) -> int:
    require_dir(args.dir)
    runs = tables.read_table(args.dir, "runs")
    summary = tables.read_table(args.dir, "summary")
    merged = runs.merge(summary[["run_id", "n_docs", "bits_per_byte"]], on="run_id", how="left")
    rows = [[r.run_id, str(r.model)[:40], r.corpus, "complete", int(r.n_docs), float(r.bits_per_byte),
             r.finished_at] for r in merged.sort_values("finished_at").itertuples()]
    for state, meta in runs_in_progress(args.dir):
        chunks = len(state.done_chunks())
        markers = state.shard_markers()
        status = "running" if is_busy(state) else (
            f"awaiting merge ({len(markers)} shards done)" if markers else "incomplete (resumable)")
        rows.append([state.run_id, str(meta.get("run_row", {}).get("model", "?"))[:40], meta.get("corpus", "?"),
                     f"{status}, {chunks} chunks", 0, float("nan"), meta.get("started_at", "")])
    if not rows:
        print(f"{args.dir}: no runs")
        return 0
    print(format_table(["run_id", "model", "corpus", "status", "docs", "bits/byte", "when"], rows))
    return 0

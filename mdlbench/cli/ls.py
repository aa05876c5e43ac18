"""`mdlbench ls DIR`: the runs in a results folder, each once — complete, damaged, running, resumable or awaiting
merge, and the prequential runs (bits/byte pooled over their seeds); `--verify` also checks every committed file's
sha256."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from mdlbench import tables
from mdlbench.cli.args import add_results_dir, results_folder
from mdlbench.cli.fmt import format_table
from mdlbench.errors import InputError
from mdlbench.run.integrity import run_health
from mdlbench.run.state import is_busy, runs_in_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_results_dir(parser)
    parser.add_argument("--verify", action="store_true", help="also check the sha256 of every committed file "
                        "(reads them all; sizes are always checked)")


def require_dir(path: Path) -> None:
    if not path.is_dir():
        raise InputError(f"{path}: no such results folder")


def main(args: argparse.Namespace) -> int:
    folder = results_folder(args)
    require_dir(folder)
    health = run_health(folder, verify_hash=args.verify)
    runs, unreadable_runs = tables.read_table_checked(folder, "runs")
    summary, unreadable_summaries = tables.read_table_checked(folder, "summary")
    for table, values in (("runs", unreadable_runs), ("summary", unreadable_summaries)):
        for value in values:
            if table not in health.setdefault(value, []):
                health[value].append(table)
    merged = runs.merge(summary[["run_id", "n_docs", "bits_per_byte"]], on="run_id", how="left")
    rows, listed = [], set()
    for r in merged.sort_values("finished_at").itertuples():
        damaged = health.get(r.run_id, [])
        status = f"damaged ({', '.join(damaged)})" if damaged else "complete"
        rows.append([r.run_id, str(r.model), r.corpus, status,
                     int(r.n_docs) if r.n_docs == r.n_docs else 0, float(r.bits_per_byte), r.finished_at])
        listed.add(r.run_id)
    for run_id, damaged in health.items():  # damaged beyond reading its own row
        if damaged and run_id not in listed:
            rows.append([run_id, "?", "?", f"damaged ({', '.join(damaged)})", 0, float("nan"), ""])
            listed.add(run_id)
    prequential, unreadable = tables.read_table_checked(folder, "prequential")
    for run_id in unreadable:
        rows.append([run_id, "?", "?", "damaged (prequential)", 0, float("nan"), ""])
    for run_id, seeds in prequential.groupby("run_id", sort=False):
        first = seeds.iloc[0]
        bpb = math.fsum(seeds["prequential_bits"]) / float(seeds["n_bytes"].sum())  # pooled over seeds
        damaged = health.get(str(run_id), [])
        status = f"damaged ({', '.join(damaged)})" if damaged else (
            f"prequential {first['estimator']}, {len(seeds)} seed{'s' * (len(seeds) != 1)}")
        finished = seeds["finished_at"].dropna()  # null in rows written before the column existed
        rows.append([str(run_id), str(first["model"]), first["corpus"], status, int(first["n_documents"]), bpb,
                     finished.max() if len(finished) else ""])
        listed.add(str(run_id))
    for state, meta in runs_in_progress(folder):
        if state.run_id in listed:
            continue  # a finished run's progress left by a kill after its commit: the next run removes it
        chunks = len(state.done_chunks())
        markers = state.shard_markers()
        status = "running" if is_busy(state) else (
            f"awaiting merge ({len(markers)} shards done)" if markers else "incomplete (resumable)")
        rows.append([state.run_id, str(meta.get("run_row", {}).get("model", "?")), meta.get("corpus", "?"),
                     f"{status}, {chunks} chunks", 0, float("nan"), meta.get("started_at", "")])
    if not rows:
        print(f"{folder}: no runs")
        return 0
    print(format_table(["run_id", "model", "corpus", "status", "docs", "bits/byte", "when"], rows,
                       shrink=("model", "corpus")))
    return 0

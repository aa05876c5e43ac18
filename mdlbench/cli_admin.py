"""`mdlbench ls DIR`, `mdlbench gc DIR`, `mdlbench merge DIR`: look after a results folder."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from mdlbench import tables
from mdlbench.cli import format_table
from mdlbench.errors import EXIT_BAD_INPUT, InputError
from mdlbench.locks import file_lock, is_locked
from mdlbench.runstate import LOCK_DIR, PROGRESS_DIR, RUN_META, RunState


def _dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", type=Path, help="results folder")


add_ls_arguments = add_merge_arguments = _dir_arg


def add_gc_arguments(parser: argparse.ArgumentParser) -> None:
    _dir_arg(parser)
    parser.add_argument("--dry-run", action="store_true", help="only say what would be removed")


def _require_dir(path: Path) -> None:
    if not path.is_dir():
        raise InputError(f"{path}: no such results folder")


def _in_progress(out_dir: Path) -> list[tuple[RunState, dict]]:
    found = []
    for d in sorted((out_dir / PROGRESS_DIR).glob("*")):
        state = RunState(out_dir, d.name)
        meta = state.meta() if (d / RUN_META).is_file() else {}
        found.append((state, meta))
    return found


def _busy(state: RunState) -> bool:
    locks = (state.out_dir / LOCK_DIR).glob(f"{state.run_id}.*.lock")
    return any(is_locked(p) for p in locks)


def ls_main(args: argparse.Namespace) -> int:
    _require_dir(args.dir)
    runs = tables.read_table(args.dir, "runs")
    summary = tables.read_table(args.dir, "summary")
    merged = runs.merge(summary[["run_id", "n_docs", "bits_per_byte"]], on="run_id", how="left")
    rows = [[r.run_id, str(r.model)[:40], r.corpus, "complete", int(r.n_docs), float(r.bits_per_byte),
             r.finished_at] for r in merged.sort_values("finished_at").itertuples()]
    for state, meta in _in_progress(args.dir):
        chunks = len(state.done_chunks())
        markers = state.shard_markers()
        status = "running" if _busy(state) else (
            f"awaiting merge ({len(markers)} shards done)" if markers else "incomplete (resumable)")
        rows.append([state.run_id, str(meta.get("run_row", {}).get("model", "?"))[:40], meta.get("corpus", "?"),
                     f"{status}, {chunks} chunks", 0, float("nan"), meta.get("started_at", "")])
    if not rows:
        print(f"{args.dir}: no runs")
        return 0
    print(format_table(["run_id", "model", "corpus", "status", "docs", "bits/byte", "when"], rows))
    return 0


def gc_main(args: argparse.Namespace) -> int:
    """Remove what no finished or running run needs: unmarked staging, progress of dead runs, stray temp files."""
    _require_dir(args.dir)
    removed = []
    if not args.dry_run:
        tables.recover(args.dir)  # completes marked commits, deletes unmarked staging
    for state, _ in _in_progress(args.dir):
        if _busy(state):
            continue
        removed.append(state.dir)
        if not args.dry_run:
            with file_lock(state.final_lock_path()):
                shutil.rmtree(state.dir, ignore_errors=True)
    for tmp in args.dir.rglob(".*.tmp"):
        removed.append(tmp)
        if not args.dry_run:
            tmp.unlink(missing_ok=True)
    verb = "would remove" if args.dry_run else "removed"
    for path in removed:
        print(f"{verb} {path}")
    print(f"{verb} {len(removed)} incomplete leftover(s)")
    return 0


def merge_main(args: argparse.Namespace) -> int:
    """Assemble every sharded run whose shards are all done; refuse (exit 2) incomplete or mismatched ones."""
    from mdlbench.pipeline import finalize_run

    _require_dir(args.dir)
    pending = [(s, m) for s, m in _in_progress(args.dir) if s.shard_markers()]
    if not pending:
        print(f"{args.dir}: nothing to merge")
        return 0
    status = 0
    for state, meta in pending:
        markers = state.shard_markers()
        count = int(next(iter(markers.values()))["shard"].split("/")[1])
        missing = state.missing_shards(count)
        label = f"{meta.get('run_row', {}).get('model', '?')} × {meta.get('corpus', '?')}"
        if missing:
            print(f"mdlbench merge: error: run {state.run_id} ({label}): shards {missing} of {count} are not done; "
                  "run them first", file=sys.stderr)
            status = EXIT_BAD_INPUT
            continue
        with file_lock(state.final_lock_path()):
            summary = finalize_run(args.dir, state.run_id, log=lambda m: print(m, file=sys.stderr))
        print(json.dumps({"run_id": state.run_id, "model": summary["model"], "corpus": summary["corpus"],
                          "status": "done", "bits_per_byte": summary["bits_per_byte"]}))
    return status

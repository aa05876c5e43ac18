"""`mdlbench merge DIR`: assemble every sharded run whose shards are all done; refuse (exit 2) the others."""

from __future__ import annotations

import argparse
import json
import sys

from mdlbench.cli.args import add_results_dir, results_folder
from mdlbench.cli.ls import require_dir
from mdlbench.errors import EXIT_BAD_INPUT
from mdlbench.fsio import file_lock
from mdlbench.run.assemble import finalize_run
from mdlbench.run.state import runs_in_progress


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_results_dir(parser)


def main(args: argparse.Namespace) -> int:
    folder = results_folder(args)
    require_dir(folder)
    pending = [(s, m) for s, m in runs_in_progress(folder) if s.shard_markers()]
    if not pending:
        print(f"{folder}: nothing to merge")
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
            summary = finalize_run(folder, state.run_id, log=lambda m: print(m, file=sys.stderr))
        print(json.dumps({"run_id": state.run_id, "model": summary["model"], "corpus": summary["corpus"],
                          "status": "done", "bits_per_byte": summary["bits_per_byte"]}))
    return status

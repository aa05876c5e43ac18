"""Compressor baselines in a second process, so that they use the other core while the models score.

The child re-opens the corpus from its spec (documents never cross the process boundary) and commits the rows of
``baselines`` itself; the parent only waits for it when it needs the rows (the console summary, two-part codes).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from mdlbench import tables
from mdlbench.corpora import Corpus, open_corpus


def baseline_names(requested: tuple[str, ...] | None) -> list[str]:
    """None -> every registered compressor; ("none",) -> none; else the names, validated."""
    from mdlbench.baselines.compressors import COMPRESSORS, get_compressor

    if requested is None:
        return list(COMPRESSORS)
    if list(requested) == ["none"]:
        return []
    for name in requested:
        get_compressor(name)  # raises InputError with a suggestion
    return list(requested)


def _baselines_job(out_dir: str, reopen: dict[str, Any], names: list[str]) -> str:
    """Runs in the child process: open the corpus again and make sure its baselines exist. Returns its sha256."""
    from mdlbench.baselines.run import ensure_baselines

    corpus = open_corpus(**reopen)
    sha = corpus.sha256()
    ensure_baselines(Path(out_dir), corpus.name, sha, lambda: (d.text.encode("utf-8") for d in corpus.documents()),
                     names)
    return sha


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: die when the parent does (e.g. kill -9), instead of lingering as an orphan that holds
    the parent's stdout/stderr open."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


MANAGER_JOIN_SECONDS = 5.0  # bound on waiting for a terminated pool's manager thread


def _key(corpus: Corpus) -> str:
    return json.dumps(corpus.reopen, sort_keys=True)


class BaselineRunner:
    """Baselines for each corpus in one background process, started before the models score."""

    def __init__(self, out_dir: Path, names: list[str]) -> None:
        self.out_dir = out_dir
        self.names = names
        self.futures: dict[str, Future | None] = {}  # None: every row was already stored
        # Read once per corpus: a job over many models asks for the same rows once per model.
        self.rows: dict[tuple[str, str], pd.DataFrame] = {}
        self.pool: ProcessPoolExecutor | None = None

    def start(self, corpus: Corpus, *, corpus_sha256: str | None = None) -> None:
        """Make sure the corpus's rows exist. With the sha256 of its exact bytes known (from a finished run),
        nothing is started when they are all stored already."""
        from mdlbench.baselines.run import stored

        key = _key(corpus)
        if not self.names or key in self.futures:
            return
        if corpus_sha256 is not None and stored(self.out_dir, corpus_sha256, self.names):
            self.futures[key] = None
            return
        if self.pool is None:
            # spawn, not fork: the parent holds torch and tokenizer threads.
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_exit_with_parent, initargs=(os.getpid(),))
        self.futures[key] = self.pool.submit(_baselines_job, str(self.out_dir), corpus.reopen, self.names)

    def result(self, corpus: Corpus, corpus_sha256: str) -> pd.DataFrame:
        """The baselines rows of this corpus (waits for the background job); empty when none were asked for."""
        key = _key(corpus)
        if key not in self.futures:
            return pd.DataFrame()
        if (key, corpus_sha256) not in self.rows:
            future = self.futures[key]
            if future is not None:
                future.result()  # re-raises the child's error
            df = tables.read_table(self.out_dir, "baselines")
            keep = (df["corpus_sha256"] == corpus_sha256) & df["compressor"].isin(self.names)
            self.rows[key, corpus_sha256] = df[keep]
        return self.rows[key, corpus_sha256]

    def terminate(self) -> None:
        """Stop the child now (an interrupt or a failure): its rows are committed atomically or not at all."""
        if self.pool is not None:
            # Best effort, and never an error of its own: this runs while another exception (the one the user must
            # see) is on its way out, and a pool whose child just died can raise BrokenPipeError on shutdown.
            with contextlib.suppress(OSError):
                # concurrent.futures has no public way to stop a running task; its worker processes are kept here.
                manager = getattr(self.pool, "_executor_manager_thread", None)
                for process in list(getattr(self.pool, "_processes", {}).values()):
                    process.terminate()
                self.pool.shutdown(wait=False, cancel_futures=True)
                # Let the pool's manager thread close its pipes now: if it is still closing them when the
                # interpreter exits, concurrent.futures' exit hook (which takes no lock) can write to a closed one
                # and print a traceback after our one-line message (seen under load in the signal test).
                if manager is not None:
                    manager.join(timeout=MANAGER_JOIN_SECONDS)
            self.pool = None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

"""What a run adds beyond code lengths: compressor baselines, two-part codes, real coding, prequential MDL.

Each extra is its own table, committed after (and separately from) the run's core tables, and filled in on a
later invocation if it is missing — so re-running a job after adding `--two-part quantized` computes only that.
Baselines depend only on the corpus; they run in a separate process (the second core) while the model scores.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from mdlbench import tables
from mdlbench.codelength import fsum_bits
from mdlbench.corpora import Corpus, open_corpus
from mdlbench.errors import InputError

TWO_PART_DEFAULT = ("naive", "gguf-file", "checkpoint-zstd")
# zstd-19 of a float checkpoint runs at about 1 MB/s here: on by default only for checkpoints this small.
CHECKPOINT_DEFAULT_MAX_PARAMS = 16_000_000
TWO_PART_ALIASES = {"checkpoint": "checkpoint-zstd", "gguf": "gguf-file"}


def baseline_names(requested: Sequence[str] | None) -> list[str]:
    """None -> every registered compressor; ("none",) -> none; else the names, validated."""
    from mdlbench.baselines.compressors import COMPRESSORS, get_compressor

    if requested is None:
        return list(COMPRESSORS)
    if list(requested) == ["none"]:
        return []
    for name in requested:
        get_compressor(name)  # raises InputError with a suggestion
    return list(requested)


def _baselines_job(out_dir: str, spec: str, open_kwargs: dict[str, Any], names: list[str]) -> str:
    """Runs in a child process: open the corpus again and make sure its baselines exist. Returns the corpus sha."""
    from mdlbench.baselines.run import ensure_baselines

    corpus = open_corpus(spec, **open_kwargs)
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


class BaselineRunner:
    """Baselines for each corpus in one background process, started before the models score."""

    def __init__(self, out_dir: Path, names: list[str]) -> None:
        self.out_dir = out_dir
        self.names = names
        self.futures: dict[str, Future] = {}
        self.pool: ProcessPoolExecutor | None = None
        if names:
            # spawn, not fork: the parent holds torch and tokenizer threads.
            self.pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_exit_with_parent, initargs=(os.getpid(),))

    def start(self, spec: str, open_kwargs: dict[str, Any]) -> None:
        if self.pool is not None and spec not in self.futures:
            self.futures[spec] = self.pool.submit(_baselines_job, str(self.out_dir), spec, open_kwargs, self.names)

    def result(self, spec: str, corpus_sha256: str) -> pd.DataFrame:
        """The baselines rows of this corpus (waits for the background job); empty when none were asked for."""
        if spec not in self.futures:
            return pd.DataFrame()
        self.futures[spec].result()  # re-raises the child's error
        df = tables.read_table(self.out_dir, "baselines")
        return df[(df["corpus_sha256"] == corpus_sha256) & df["compressor"].isin(self.names)]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def best_baseline(baselines: pd.DataFrame, mode: str) -> tuple[str, float] | None:
    rows = baselines[baselines["mode"] == mode] if len(baselines) else baselines
    if not len(rows):
        return None
    best = rows.loc[rows["bits_per_byte"].idxmin()]
    return str(best["compressor"]), float(best["bits_per_byte"])


def two_part_codes(requested: Sequence[str] | None, n_params: int) -> list[str]:
    if requested is None:
        codes = list(TWO_PART_DEFAULT)
        if n_params > CHECKPOINT_DEFAULT_MAX_PARAMS:
            codes.remove("checkpoint-zstd")
        return codes
    if list(requested) == ["none"]:
        return []
    return [TWO_PART_ALIASES.get(c, c) for c in requested]


def corpus_data_bits(scorer: Any, corpus: Corpus, chunk_docs: int) -> float:
    """Σ code length of a corpus under a scorer, in the same fixed chunks as the run (bounded memory)."""
    total: list[float] = []
    chunk: list = []
    for i, doc in enumerate(corpus.documents()):
        chunk.append((i, doc))
        if len(chunk) == chunk_docs:
            total += [c.code_length_bits for c in scorer.score(chunk)]
            chunk = []
    if chunk:
        total += [c.code_length_bits for c in scorer.score(chunk)]
    return fsum_bits(total)


def two_part_partitions(run_id: str, plan: Any, corpus: Corpus, summary: dict[str, Any], codes: list[str],
                        baselines: pd.DataFrame, chunk_docs: int) -> dict[tuple[str, str], Any]:
    """two_part and two_part_vs_baseline rows for a finished HF run (the model is still loaded)."""
    from mdlbench.mdl.two_part import Baseline, two_part_rows, vs_baseline_rows
    from mdlbench.scoring.hf import HFScorer

    scorer = plan.scorer
    loaded = scorer.loaded

    def rescore(model: Any) -> float:
        quantized = HFScorer(replace(loaded, model=model), scorer.settings, scorer.window, scorer.stride)
        return corpus_data_bits(quantized, corpus, chunk_docs)

    try:
        rows = two_part_rows(loaded.model, loaded.tokenizer, data_bits=float(summary["code_length_bits"]),
                             n_bytes=int(summary["n_bytes"]), codes=codes, rescore=rescore,
                             gguf_path=loaded.gguf_file)
    except ValueError as exc:
        raise InputError(f"--two-part {','.join(codes)}: {exc}") from None
    refs = [Baseline(str(r.compressor), str(r.mode), float(r.bits_per_byte)) for r in baselines.itertuples()]
    refs.append(Baseline("uniform-bytes", "per_document", 8.0))
    out = {("two_part", run_id): tables.to_arrow("two_part", rows)}
    vs = vs_baseline_rows(rows, refs)
    out[("two_part_vs_baseline", run_id)] = tables.to_arrow("two_part_vs_baseline", vs)
    return out


def coding_partition(run_id: str, plan: Any, corpus: Corpus, n_docs: int) -> dict[tuple[str, str], Any]:
    """Compress and decompress the first n_docs documents with a real range coder; the `coding` table."""
    from mdlbench.coding import coding_table, verify_coding

    docs = [d for _, d in zip(range(n_docs), corpus.documents(), strict=False)]
    s = plan.scorer
    rows = verify_coding(s.loaded, docs, window=s.window, stride=s.stride, first_token=s.settings.first_token,
                         end=s.settings.end)
    return {("coding", run_id): coding_table(rows)}


def describe_two_part(rows: pd.DataFrame) -> list[str]:
    lines = []
    for r in rows.itertuples():
        lines.append(f"  {r.param_code:<16} model {r.model_bits / 8e6:10.3f} MB  data {r.data_bits_per_byte:.4f} "
                     f"bits/byte  total {r.total_bits_per_byte:10.4f} bits/byte")
    return lines


def fmt_bytes(n: float) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,.0f} B"


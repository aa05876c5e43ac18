"""Assembly: a run whose chunks are all done becomes its tables (runs, documents, summary, tokens), committed at once.

The summary is recomputed from the documents table alone (sums, then ratios of sums, and the document bootstrap),
so every summary value can be recomputed from ``documents`` by the same pure functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

import mdlbench
from mdlbench import tables
from mdlbench.codelength import bits_per_byte, bits_per_char, bits_per_token, bootstrap_ratio_ci, fsum_bits
from mdlbench.context_curve import merge_curve_rows
from mdlbench.errors import InputError
from mdlbench.run.state import RunState


def now_utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    """Versions for the runs table, read from package metadata (no torch import)."""
    def of(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return ""

    return {"mdlbench_version": mdlbench.__version__, "scoring_code_version": mdlbench.SCORING_CODE_VERSION,
            "torch_version": of("torch"), "transformers_version": of("transformers")}


def summarize(model: str, corpus: str, documents: pa.Table | Any, seconds: float, *, bootstrap_samples: int,
              seed: int) -> dict[str, Any]:
    """The summary row from the documents table: sums, then ratios of sums, and the bootstrap CI of bits/byte."""
    col = (lambda name: documents.column(name).to_numpy()) if isinstance(documents, pa.Table) else (
        lambda name: np.asarray(documents[name]))
    bits, n_bytes_each = col("code_length_bits").astype(np.float64), col("n_bytes")
    total_bits = fsum_bits(bits)
    n_bytes, n_chars, n_tokens = int(n_bytes_each.sum()), int(col("n_chars").sum()), int(col("n_tokens").sum())
    low, high = bootstrap_ratio_ci(bits, n_bytes_each, n_samples=bootstrap_samples, seed=seed)
    return {"model": model, "corpus": corpus, "n_docs": len(bits), "n_bytes": n_bytes, "n_chars": n_chars,
            "n_tokens": n_tokens, "code_length_bits": total_bits, "bits_per_byte": bits_per_byte(total_bits, n_bytes),
            "bits_per_token": bits_per_token(total_bits, n_tokens), "bits_per_char": bits_per_char(total_bits, n_chars),
            "bpb_ci_low": low, "bpb_ci_high": high,
            "n_roundtrip_failures": int((~col("tokenizer_roundtrip_ok").astype(bool)).sum()),
            "tokens_per_second": n_tokens / seconds if seconds > 0 else math.nan, "wall_seconds": seconds}


def finalize_run(out_dir: Path, run_id: str, *, log: Callable[[str], None],
                 own_lock: Path | None = None) -> dict[str, Any]:
    """Assemble a run whose shards are all done into its tables and commit them; returns the summary row.
    ``own_lock``: the shard lock the calling process holds while it assembles (see RunState.clear_unless_scored)."""
    state = RunState(out_dir, run_id)
    meta = state.meta()
    markers = list(state.shard_markers().values())
    counts = {m["shard"].split("/")[1] for m in markers}
    if len(counts) != 1:
        raise InputError(f"run {run_id}: shard markers of different shard counts ({sorted(counts)}); remove the "
                         f"stale ones with `mdlbench gc {out_dir}` and re-run the missing shards")
    n_docs = {m["n_docs"] for m in markers}
    shas = {m["corpus_sha256"] for m in markers}
    if len(n_docs) != 1 or len(shas) != 1:
        raise InputError(f"run {run_id}: shards saw different corpora ({len(shas)} stream hashes); the corpus "
                         "changed between shards — re-run them on the same data")
    docs, seconds = state.read_chunks("documents")
    total = n_docs.pop()
    got = docs.column("doc_index").to_numpy() if docs is not None else np.zeros(0, dtype=np.int64)
    if docs is None and total == 0:
        docs = tables.to_arrow("documents", [])
    elif not np.array_equal(np.sort(got), np.arange(total)):
        raise InputError(f"run {run_id}: chunks cover {len(set(got.tolist()))} of {total} documents; re-run the "
                         "missing shards before merging")
    docs = docs.sort_by("doc_index")
    row = meta["run_row"]
    summary = summarize(row["model"], meta["corpus"], docs, seconds,
                        bootstrap_samples=meta["bootstrap_samples"], seed=meta["seed"])
    failures = summary["n_roundtrip_failures"]
    if failures:
        log(f"warning: {failures} of {total} documents of {meta['corpus']} do not round-trip through "
            f"{row['model']}'s tokenizer (decode(encode(text)) != text); their bits are not a valid code — see "
            "tokenizer_roundtrip_ok in the documents table")
    run_row = {**row, "corpus": meta["corpus"], "corpus_sha256": shas.pop(), "corpus_source": meta["corpus_source"],
               "valid_code": failures == 0, "errors": meta["errors"], "bootstrap_samples": meta["bootstrap_samples"],
               "seed": meta["seed"], "started_at": datetime.fromisoformat(meta["started_at"]),
               "finished_at": datetime.fromisoformat(now_utc()), **versions()}
    schema_metadata = tables.to_arrow("documents", []).schema.metadata
    partitions = {("runs", run_id): tables.to_arrow("runs", [run_row]),
                  ("documents", run_id): docs.replace_schema_metadata(schema_metadata),
                  ("summary", run_id): tables.to_arrow("summary", [summary])}
    curve, _ = state.read_chunks("curve")
    names = {"model": row["model"], "corpus": meta["corpus"]}
    curve_rows = merge_curve_rows([[{k: v for k, v in r.items() if k not in names} for r in curve.to_pylist()]]
                                  if curve is not None else [])
    partitions[("context_curve", run_id)] = tables.to_arrow("context_curve", [{**names, **r} for r in curve_rows])
    # Per-token rows are an extra: committed with the run when every chunk wrote them, else filled in later.
    if len(state.done_chunks()) == len(state.chunk_files("tokens")) and (meta["per_token"] or total == 0):
        tokens, _ = state.read_chunks("tokens")
        empty = tables.columns_to_arrow("tokens", {n: [] for n in tables.TABLES["tokens"][1].names})
        partitions[("tokens", run_id)] = empty if tokens is None else tokens.sort_by(
            [("doc_index", "ascending"), ("token_index", "ascending")]).replace_schema_metadata(empty.schema.metadata)
    tables.commit(out_dir, partitions)
    state.clear_unless_scored(own_lock)
    return summary


def read_summary(out_dir: Path, run_id: str) -> dict[str, Any]:
    match = tables.read_partition(out_dir, "summary", run_id)
    return match.iloc[0].to_dict() if len(match) else {}

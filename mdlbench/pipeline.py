"""`mdlbench run`: models × corpora -> code lengths -> Parquet. Linear, no arithmetic of its own.

Each (model, corpus) pair is one run, identified by a content address of everything that determines its
numbers (weights sha256, tokenizer, corpus identity, settings, scoring-code version). A finished run is not
recomputed unless ``force``; all of a run's tables are committed at once (tables.commit) or not at all.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

import mdlbench
from mdlbench import extras, tables
from mdlbench.codelength import bits_per_byte, bits_per_char, bits_per_token, bootstrap_ratio_ci, fsum_bits
from mdlbench.corpora import Corpus, Document, StreamHasher, open_corpus
from mdlbench.distributed import DistContext
from mdlbench.errors import InputError, MdlbenchError
from mdlbench.locks import file_lock
from mdlbench.progress import Progress
from mdlbench.runstate import SINGLE, RunState, Shard
from mdlbench.scoring.base import DocumentCode, ScoringSettings
from mdlbench.scoring.models import UNIFORM_BYTES, LoadedModel, load_model
from mdlbench.scoring.uniform import UniformBytesScorer

DEFAULT_MODELS = ("default", UNIFORM_BYTES)
DEFAULT_WINDOW_CAP = 2048  # default window: the model's context, capped here (memory and comparability)
LM_EVAL_FALLBACK_WINDOW = 2048  # lm-eval's HFLM max_length when the config names none
Protocol = Literal["mdlbench", "lm-eval"]


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything `mdlbench run` takes besides the model and corpus specs. None means 'the default'."""

    window: int | None = None
    stride: int | None = None
    first_token: Literal["bos", "uniform"] | None = None
    end: Literal["eos", "none"] | None = None
    protocol: Protocol = "mdlbench"
    dtype: str = "float32"
    device: str = "auto"
    batch_size: int = 0  # 0 = auto (scoring/hf.py)
    per_token: bool = False
    model_revision: str | None = None
    boundary_token: str | None = None
    trust_remote_code: bool = False
    text_field: str = "text"
    id_field: str | None = None
    corpus_revision: str | None = None
    data_files: str | None = None
    max_docs: int | None = None
    max_bytes: int | None = None
    errors: Literal["strict", "replace"] = "strict"
    bootstrap_samples: int = 10_000
    seed: int = 0
    force: bool = False
    progress: bool = True
    checkpoint_docs: int = 16  # documents per crash-safe chunk (also the unit of sharding and of batching)
    shard: str | None = None  # "I/N": score only chunks k with k % N == I (see runstate.py)
    # Extras: separate tables, not part of the run id (they do not change the code lengths).
    baselines: tuple[str, ...] | None = None  # compressor names; None = all; ("none",) = none
    two_part: tuple[str, ...] | None = None  # parameter codes; None = the cheap defaults; ("none",) = none
    verify_coding: int = 0  # compress + decompress the first N documents with a real range coder
    prequential: bool = False  # also run prequential MDL on each corpus (about a minute per seed on the sample)
    prequential_seeds: str = "0,1,2"
    prequential_arch: str | None = None  # transformers config JSON for the prequential model
    prequential_tokenizer: str = "bytes"  # bytes | smollm2 | a tokenizer folder (prequential/vocab.py)
    prequential_arch_grid: str | None = None  # TOML grid: one prequential run per (n_layer, ffn_ratio) cell
    lens: bool = False  # the FFN lens with its default settings (component codes, activity, pruning; lens/)


Status = Literal["done", "reused", "shard-done", "failed"]


@dataclass
class RunOutcome:
    run_id: str
    model: str
    corpus: str
    status: Status
    summary: dict[str, Any]
    message: str = ""
    exit_code: int = 0
    corpus_sha256: str = ""
    plan: Any = field(default=None, repr=False)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def reused(self) -> bool:
        return self.status == "reused"


def resolve_windowing(options: RunOptions, context_length: int | None) -> tuple[ScoringSettings, int, int]:
    """Apply the protocol preset and defaults; validate against the model's context."""
    first, end, window, stride = options.first_token, options.end, options.window, options.stride
    if options.protocol == "lm-eval":
        # lm-evaluation-harness loglikelihood_rolling: disjoint prediction windows of max_length with one
        # token of carried context, the prefix (BOS, else EOS) on the first window only, no EOS cost.
        for value, flag, allowed in ((first, "--first-token", "bos"), (end, "--end", "none")):
            if value not in (None, allowed):
                raise InputError(f"--protocol lm-eval fixes {flag} {allowed}; drop {flag} {value}")
        window = window or context_length or LM_EVAL_FALLBACK_WINDOW
        if stride not in (None, window):
            raise InputError(f"--protocol lm-eval scores disjoint windows (stride = window = {window}); drop --stride")
        stride, first, end = window, "bos", "none"
    elif options.protocol != "mdlbench":
        raise InputError(f"--protocol {options.protocol!r}: choose mdlbench or lm-eval")
    window = window or min(context_length or DEFAULT_WINDOW_CAP, DEFAULT_WINDOW_CAP)
    stride = stride or max(1, window // 2)
    if window < 1:
        raise InputError(f"--window {window}: must be >= 1")
    if not 1 <= stride <= window:
        raise InputError(f"--stride {stride} must be between 1 and --window {window}; each window scores its last "
                         "stride tokens with window − stride tokens of context")
    if context_length is not None and window > context_length:
        raise InputError(f"--window {window} exceeds the model's context of {context_length} tokens; "
                         f"use --window {context_length} or less")
    if options.batch_size < 0:
        raise InputError(f"--batch-size {options.batch_size}: must be >= 1, or 0 for auto")
    settings = ScoringSettings(window, stride, first or "bos", end or "eos", options.batch_size, options.per_token)
    return settings, window, stride


PARAM_COLUMNS = ("params_embedding", "params_attention", "params_ffn", "params_norm", "params_lm_head",
                 "params_other", "n_layers", "d_model", "d_ff", "n_heads", "context_length", "ffn_ratio",
                 "ffn_param_share")


def _param_columns(model: Any) -> dict[str, Any]:
    """n_params and its split by component, plus the architecture, for the runs table (see mdl/params.py)."""
    from mdlbench.mdl.params import count_parameters

    counts = count_parameters(model).as_columns()
    return {"n_params": counts["params_total"], **{k: counts[k] for k in PARAM_COLUMNS}}


def content_address(identity: dict[str, Any]) -> str:
    """Run id: 16 hex digits of sha256 over the canonical JSON of what determines the numbers."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"mdlbench_version": mdlbench.__version__, "scoring_code_version": mdlbench.SCORING_CODE_VERSION,
            "torch_version": torch.__version__, "transformers_version": transformers.__version__}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _document_rows(corpus: str, codes: Sequence[DocumentCode]) -> list[dict[str, Any]]:
    return [{"corpus": corpus, "doc_index": c.doc_index, "doc_id": c.doc.doc_id, "domain": c.doc.domain,
             "n_bytes": c.doc.n_bytes, "n_chars": c.doc.n_chars, "n_tokens": c.n_tokens,
             "code_length_bits": c.code_length_bits, "first_token_bits": c.first_token_bits,
             "end_bits": c.end_bits, "tokenizer_roundtrip_ok": c.tokenizer_roundtrip_ok,
             "n_replaced_bytes": c.doc.n_replaced_bytes} for c in codes]


def _token_columns(codes: Sequence[DocumentCode]) -> dict[str, Any]:
    parts = [c for c in codes if c.tokens is not None]

    def cat(attr: str) -> np.ndarray:
        arrays = [getattr(c.tokens, attr) for c in parts]
        return np.concatenate(arrays) if arrays else np.zeros(0)

    return {"doc_index": np.concatenate([np.full(len(c.tokens.token_index), c.doc_index) for c in parts])
            if parts else np.zeros(0, dtype=np.int64),
            "doc_id": [c.doc.doc_id for c in parts for _ in range(len(c.tokens.token_index))],
            **{k: cat(k) for k in ("token_index", "token_id", "byte_start", "byte_end", "context_tokens",
                                   "code_length_bits")}}


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


class _Model:
    """A loaded model (or uniform-bytes) with what runs need from it."""

    def __init__(self, spec: str, options: RunOptions) -> None:
        self.spec = spec
        self.loaded: LoadedModel | None = None
        if spec != UNIFORM_BYTES:
            self.loaded = load_model(spec, revision=options.model_revision, dtype=options.dtype,
                                     device=options.device, trust_remote_code=options.trust_remote_code,
                                     boundary_token=options.boundary_token)

    @property
    def name(self) -> str:
        return self.loaded.name if self.loaded else UNIFORM_BYTES


@dataclass
class PlannedRun:
    run_id: str
    identity: dict[str, Any]
    row: dict[str, Any]  # runs-table fields known before scoring
    scorer: Any


def plan_run(model: _Model, corpus: Corpus, options: RunOptions) -> PlannedRun:
    from mdlbench.scoring.hf import HFScorer

    common = {"corpus_identity": corpus.identity(), "text_field": options.text_field, "id_field": options.id_field,
              "errors": options.errors, "bootstrap_samples": options.bootstrap_samples, "seed": options.seed,
              "per_token": options.per_token, "scoring_code_version": mdlbench.SCORING_CODE_VERSION}
    if model.loaded is None:
        identity = {**common, "model": UNIFORM_BYTES}
        row = {"model": UNIFORM_BYTES, "model_revision": "", "model_sha256": "", "model_format": "builtin",
               "tokenizer_sha256": "", "vocab_size": 256, "window": None, "stride": None, "first_token": "none",
               "end": "none", "protocol": options.protocol, "prefix_token_id": None, "eos_token_id": None,
               "dtype": "n/a", "device": "cpu", "batch_size": None, "n_params": 0,
               **dict.fromkeys(PARAM_COLUMNS)}
        scorer: Any = UniformBytesScorer(options.per_token)
    else:
        lm = model.loaded
        settings, window, stride = resolve_windowing(options, lm.context_length)
        scorer = HFScorer(lm, settings, window, stride)
        identity = {**common, "model_sha256": lm.sha256, "model_revision": lm.revision, "model_format": lm.format,
                    "tokenizer_sha256": lm.tokenizer_sha256, "window": window, "stride": stride,
                    "first_token": settings.first_token, "end": settings.end, "prefix": scorer.prefix_token_id,
                    "eos": scorer.eos_token_id, "dtype": lm.dtype, "device_type": lm.device}
        row = {"model": lm.name, "model_revision": lm.revision, "model_sha256": lm.sha256,
               "model_format": lm.format, "tokenizer_sha256": lm.tokenizer_sha256, "vocab_size": scorer.vocab_size,
               "window": window, "stride": stride, "first_token": settings.first_token, "end": settings.end,
               "protocol": options.protocol, "prefix_token_id": scorer.prefix_token_id,
               "eos_token_id": scorer.eos_token_id, "dtype": lm.dtype, "device": lm.device,
               "batch_size": settings.batch_size, **_param_columns(lm.model)}
    row["config_json"] = json.dumps({"model_spec": model.spec, "corpus_spec": corpus.source,
                                     **{k: v for k, v in asdict(options).items() if k not in ("force", "progress")}},
                                    sort_keys=True)
    return PlannedRun(content_address(identity), identity, row, scorer)


def score_corpus(scorer: Any, corpus: Corpus, progress: Progress | None = None) -> tuple[list[DocumentCode], str]:
    """Code every document of a corpus as one pool (tests and small corpora): codes in order, stream sha256."""
    hasher = StreamHasher()
    docs = []
    for i, doc in enumerate(corpus.documents()):
        hasher.update(doc)
        docs.append((i, doc))
    codes = sorted(scorer.score(docs), key=lambda c: c.doc_index)
    if [c.doc_index for c in codes] != list(range(len(docs))):
        raise AssertionError("scorer lost or duplicated documents")  # an internal bug, never user input
    if progress is not None:
        for c in codes:
            progress.update(1, c.doc.n_bytes, c.n_tokens)
    return codes, hasher.hexdigest()


def _owned_chunks(corpus: Corpus, state: RunState, shard: Shard, chunk_docs: int, hasher: StreamHasher,
                  counter: list[int], progress: Progress) -> Iterator[tuple[int, list[tuple[int, Document]]]]:
    """Yield (k, chunk) for this shard's chunks that are not done; hash and count every document on the way."""
    chunk: list[tuple[int, Document]] = []
    k = 0

    def flush() -> Iterator[tuple[int, list[tuple[int, Document]]]]:
        if shard.owns(k) and not state.chunk_done(k):
            yield k, chunk
        else:
            progress.update(len(chunk), sum(d.n_bytes for _, d in chunk), 0)

    for i, doc in enumerate(corpus.documents()):
        hasher.update(doc)
        counter[0] += 1
        chunk.append((i, doc))
        if len(chunk) == chunk_docs:
            yield from flush()
            chunk, k = [], k + 1
    if chunk:
        yield from flush()


def _score_chunks(plan: PlannedRun, corpus: Corpus, state: RunState, shard: Shard, options: RunOptions,
                  progress: Progress) -> tuple[int, str]:
    """Score this shard's chunks that are not done yet; returns (documents in the corpus, stream sha256).

    Reading and tokenizing chunk k+1 runs in a background thread while the model codes chunk k, and chunk k's
    checkpoint (Arrow conversion, Parquet write, fsync) in another while the model codes chunk k+1. At most one
    write is in flight, so memory stays bounded and a write error surfaces at the next chunk. A crash loses only
    chunks whose write had not finished; a resume redoes them.
    """
    hasher = StreamHasher()
    counter = [0]
    live_tokens = hasattr(plan.scorer, "on_progress")
    if live_tokens:
        plan.scorer.on_progress = lambda n_predictions: progress.update(0, 0, n_predictions)
    chunks = _owned_chunks(corpus, state, shard, options.checkpoint_docs, hasher, counter, progress)

    def next_prepared() -> tuple[int, list[tuple[int, Document]], Any] | None:
        item = next(chunks, None)
        return None if item is None else (item[0], item[1], plan.scorer.prepare(item[1]))

    def write(k: int, codes: list[Any], seconds: float) -> None:
        docs_table = tables.to_arrow("documents", _document_rows(corpus.name, codes))
        tokens_table = tables.columns_to_arrow("tokens", _token_columns(codes)) if options.per_token else None
        state.write_chunk(k, docs_table, tokens_table, seconds)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdlbench-prepare") as pool, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="mdlbench-write") as writer:
        pending = pool.submit(next_prepared)
        written: Future[None] | None = None
        while (item := pending.result()) is not None:
            k, chunk, prepared = item
            pending = pool.submit(next_prepared)
            t0 = time.perf_counter()
            codes = sorted(plan.scorer.run(prepared), key=lambda c: c.doc_index)
            if [c.doc_index for c in codes] != [i for i, _ in chunk]:
                raise AssertionError("scorer lost or duplicated documents")  # an internal bug, never user input
            seconds = time.perf_counter() - t0
            if written is not None:
                written.result()
            written = writer.submit(write, k, codes, seconds)
            progress.update(len(chunk), sum(c.doc.n_bytes for c in codes),
                            0 if live_tokens else sum(c.n_tokens for c in codes))
        if written is not None:
            written.result()
    if live_tokens:
        plan.scorer.on_progress = None
    return counter[0], hasher.hexdigest()


def finalize_run(out_dir: Path, run_id: str, *, log: Callable[[str], None]) -> dict[str, Any]:
    """Assemble a run whose shards are all done into its tables and commit them; returns the summary row."""
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
               "seed": meta["seed"], "started_at": meta["started_at"], "finished_at": _now(), **_versions()}
    partitions = {("runs", run_id): tables.to_arrow("runs", [run_row]),
                  ("documents", run_id): tables.to_arrow("documents", docs.to_pylist())
                  if docs.num_rows == 0 else docs.replace_schema_metadata(
                      tables.to_arrow("documents", []).schema.metadata),
                  ("summary", run_id): tables.to_arrow("summary", [summary])}
    if meta["per_token"]:
        tokens, _ = state.read_chunks("tokens")
        partitions[("tokens", run_id)] = (tokens.sort_by([("doc_index", "ascending"), ("token_index", "ascending")])
                                          if tokens is not None else tables.columns_to_arrow(
                                              "tokens", {n: [] for n in tables.TABLES["tokens"][1].names}))
    tables.commit(out_dir, partitions)
    state.clear()
    return summary


def _read_summary(out_dir: Path, run_id: str) -> dict[str, Any]:
    summary = tables.read_table(out_dir, "summary")
    match = summary[summary["run_id"] == run_id]
    return match.iloc[0].to_dict() if len(match) else {}


def execute_run(plan: PlannedRun, model: _Model, corpus: Corpus, options: RunOptions, out_dir: Path, shard: Shard,
                dist: DistContext, log: Callable[[str], None]) -> RunOutcome:
    """One (model, corpus) run: skip if complete, else score this shard's chunks, then assemble if all are done."""
    outcome = _execute_planned(plan, model, corpus, options, out_dir, shard, dist, log)
    outcome.plan = plan
    if outcome.status in ("done", "reused"):
        runs = tables.read_table(out_dir, "runs")
        outcome.corpus_sha256 = str(runs.loc[runs["run_id"] == plan.run_id, "corpus_sha256"].iloc[0])
    return outcome


def _execute_planned(plan: PlannedRun, model: _Model, corpus: Corpus, options: RunOptions, out_dir: Path,
                     shard: Shard, dist: DistContext, log: Callable[[str], None]) -> RunOutcome:
    state = RunState(out_dir, plan.run_id)
    label = f"{model.name} × {corpus.name}"
    if state.is_complete() and not options.force:
        log(f"run {plan.run_id} ({label}) is already complete in {out_dir}; skipping (--force recomputes)")
        return RunOutcome(plan.run_id, model.name, corpus.name, "reused", _read_summary(out_dir, plan.run_id))
    meta = {"identity": plan.identity, "chunk_docs": options.checkpoint_docs, "batch_size": options.batch_size,
            "run_row": plan.row, "corpus": corpus.name, "corpus_source": corpus.source, "errors": options.errors,
            "bootstrap_samples": options.bootstrap_samples, "seed": options.seed, "per_token": options.per_token,
            "started_at": _now()}
    with file_lock_for(state, shard, log, label):
        if state.is_complete() and not options.force:
            log(f"run {plan.run_id} ({label}) was completed by another process; skipping")
            return RunOutcome(plan.run_id, model.name, corpus.name, "reused", _read_summary(out_dir, plan.run_id))
        if options.force and dist.is_leader and shard.count == 1:
            state.clear()
        dist.barrier()
        state.ensure(meta)
        progress = Progress(label + (f" [shard {shard}]" if shard.count > 1 else ""), corpus.size_hint_bytes,
                            enabled=options.progress)
        n_docs, corpus_sha = _score_chunks(plan, corpus, state, shard, options, progress)
        progress.close()
        state.mark_shard(shard, n_docs, corpus_sha)
    dist.barrier()
    outcome: RunOutcome
    if dist.is_leader:
        missing = state.missing_shards(shard.count)
        if missing:
            msg = (f"shard {shard} of run {plan.run_id} ({label}) is done; shards {missing} of {shard.count} are "
                   f"not — run them, then `mdlbench merge {out_dir}`")
            log(msg)
            outcome = RunOutcome(plan.run_id, model.name, corpus.name, "shard-done", {}, msg)
        else:
            with file_lock(state.final_lock_path()):
                summary = (_read_summary(out_dir, plan.run_id) if state.is_complete() and not state.dir.exists()
                           else finalize_run(out_dir, plan.run_id, log=log))
            outcome = RunOutcome(plan.run_id, model.name, corpus.name, "done", summary)
    else:
        outcome = RunOutcome(plan.run_id, model.name, corpus.name, "shard-done", {})
    dist.barrier()
    return outcome


def file_lock_for(state: RunState, shard: Shard, log: Callable[[str], None], label: str):
    return file_lock(state.shard_lock_path(shard),
                     on_wait=lambda: log(f"run {state.run_id} ({label}) shard {shard} is being written by another "
                                         "process; waiting for it to finish"))


def _open_kwargs(options: RunOptions) -> dict[str, Any]:
    return {"text_field": options.text_field, "id_field": options.id_field, "revision": options.corpus_revision,
            "max_docs": options.max_docs, "max_bytes": options.max_bytes, "errors": options.errors,
            "data_files": options.data_files}


def _add_extras(outcome: RunOutcome, corpus: Corpus, options: RunOptions, out_dir: Path,
                baselines: extras.BaselineRunner, spec: str, log: Callable[[str], None], model: _Model) -> None:
    """Two-part and real-coding tables for a finished run (computed once; filled in if missing)."""
    plan = outcome.plan
    if plan is None or plan.scorer.__class__.__name__ != "HFScorer":
        return
    run_id = outcome.run_id
    codes = extras.two_part_codes(options.two_part, int(plan.row["n_params"] or 0))
    if codes and (options.force or not tables.partition_exists(out_dir, "two_part", run_id)):
        log(f"two-part codes for {outcome.model} × {corpus.name}: {', '.join(codes)} ...")
        refs = baselines.result(spec, outcome.corpus_sha256)
        tables.commit(out_dir, extras.two_part_partitions(run_id, plan, corpus, outcome.summary, codes, refs,
                                                          options.checkpoint_docs))
    if options.verify_coding > 0 and (options.force or not tables.partition_exists(out_dir, "coding", run_id)):
        log(f"real coding of {options.verify_coding} document(s) of {corpus.name} with {outcome.model} ...")
        tables.commit(out_dir, extras.coding_partition(run_id, plan, corpus, options.verify_coding))
    if options.lens and (options.force or not tables.partition_exists(out_dir, "component_codes", run_id)):
        from dataclasses import replace

        from mdlbench.lens.driver import Lens, LensSettings

        log(f"lens of {outcome.model} × {corpus.name} (default settings) ...")
        # force=False: the run was just computed (or reused); the lens only adds its own passes to it.
        Lens(model, corpus, plan, replace(options, force=False), LensSettings(), out_dir, log).run()


def run_benchmark(model_specs: Sequence[str], corpus_specs: Sequence[str], options: RunOptions, out_dir: Path,
                  *, log: Callable[[str], None] | None = None, dist: DistContext | None = None) -> list[RunOutcome]:
    """Every corpus under every model, one run per pair, plus the extras. A failing run is reported and the
    others go on."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    dist = dist or DistContext()
    out_dir = Path(out_dir)
    if options.checkpoint_docs < 1:
        raise InputError(f"--checkpoint-docs {options.checkpoint_docs}: must be >= 1")
    if dist.enabled and options.shard:
        raise InputError("--shard and torchrun both split the work; use one of them")
    shard = dist.shard if dist.enabled else (Shard.parse(options.shard) if options.shard else SINGLE)
    corpora = [open_corpus(s, **_open_kwargs(options)) for s in corpus_specs]
    # Prequential settings are checked now, so that a bad one fails before anything is scored or written.
    prequential = _prequential_inputs(options) if options.prequential else None
    leader_extras = dist.is_leader and shard.count == 1
    baselines = extras.BaselineRunner(out_dir, extras.baseline_names(options.baselines) if leader_extras else [])
    if dist.is_leader:
        tables.recover(out_dir)
    outcomes: list[RunOutcome] = []
    try:
        for spec in model_specs:
            if spec != UNIFORM_BYTES:
                log(f"loading model {spec!r} ...")
            try:
                model = _Model(spec, options)
            except MdlbenchError as exc:
                if len(model_specs) == 1:
                    raise
                log(f"error: {exc}")
                outcomes += [RunOutcome("", spec, c.name, "failed", {}, str(exc), exc.exit_code) for c in corpora]
                continue
            for corpus_spec, corpus in zip(corpus_specs, corpora, strict=True):
                try:
                    plan = plan_run(model, corpus, options)
                    # Baselines start once a run on the corpus is known to be valid: bad input writes nothing.
                    baselines.start(corpus_spec, _open_kwargs(options))
                    outcome = execute_run(plan, model, corpus, options, out_dir, shard, dist, log)
                    if leader_extras and outcome.status in ("done", "reused"):
                        _add_extras(outcome, corpus, options, out_dir, baselines, corpus_spec, log, model)
                    outcomes.append(outcome)
                except MdlbenchError as exc:
                    if len(model_specs) * len(corpora) == 1:
                        raise
                    log(f"error: run {model.name} × {corpus.name} failed: {exc}")
                    outcomes.append(RunOutcome("", model.name, corpus.name, "failed", {}, str(exc), exc.exit_code))
            del model  # one model in memory at a time
        if leader_extras:
            _attach_comparisons(outcomes, corpus_specs, corpora, options, out_dir, baselines, prequential)
    finally:
        baselines.close()
    return outcomes


def _prequential_inputs(options: RunOptions) -> tuple[Any, tuple[int, ...], dict[str, Any] | None, Any]:
    """(tokenizer, seeds, architecture, architecture grid) of ``--prequential``, loaded and validated."""
    from mdlbench.prequential.cli import load_arch, parse_seeds
    from mdlbench.prequential.vocab import load_tokenizer

    seeds = parse_seeds(options.prequential_seeds)
    arch = load_arch(options.prequential_arch) if options.prequential_arch is not None else None
    grid = None
    if options.prequential_arch_grid is not None:
        from mdlbench.lens.grid import load_grid

        if arch is not None:
            raise InputError("prequential_arch and prequential_arch_grid both set the architecture; keep one")
        grid = load_grid(options.prequential_arch_grid)
    return load_tokenizer(options.prequential_tokenizer), seeds, arch, grid


def _attach_comparisons(outcomes: list[RunOutcome], corpus_specs: Sequence[str], corpora: Sequence[Corpus],
                        options: RunOptions, out_dir: Path, baselines: extras.BaselineRunner,
                        prequential: tuple[Any, tuple[int, ...], dict[str, Any] | None, Any] | None) -> None:
    """Best baselines, two-part rows and prequential results next to each run, for the console summary."""
    by_corpus = {c.name: (spec, c) for spec, c in zip(corpus_specs, corpora, strict=True)}
    for o in outcomes:
        if o.status not in ("done", "reused") or o.corpus not in by_corpus:
            continue
        spec, _ = by_corpus[o.corpus]
        refs = baselines.result(spec, o.corpus_sha256)
        o.extras["best_per_document"] = extras.best_baseline(refs, "per_document")
        o.extras["best_concatenated"] = extras.best_baseline(refs, "concatenated")
        if tables.partition_exists(out_dir, "two_part", o.run_id):
            tp = tables.read_table(out_dir, "two_part")
            o.extras["two_part"] = tp[tp["run_id"] == o.run_id]
    if prequential is not None:
        from mdlbench.prequential import run_prequential_for_corpus

        tokenizer, seeds, arch, grid = prequential
        for corpus in corpora:
            if grid is not None:
                from mdlbench.lens.grid import run_grid

                cells = run_grid(corpus, grid, tokenizer=tokenizer, seeds=seeds, out_dir=out_dir, force=options.force,
                                 progress=lambda m: print(m, file=sys.stderr, flush=True))
                aggregate = [{**a, "estimator": f"{a['estimator']}, n_layer {c.n_layer}, ffn_ratio {c.ffn_ratio:g}, "
                                                f"d_model {c.d_model}"} for c, r in cells for a in r.aggregate]
            else:
                aggregate = run_prequential_for_corpus(corpus, arch=arch, tokenizer=tokenizer, seeds=seeds,
                                                       out_dir=out_dir, force=options.force).aggregate
            for o in outcomes:
                if o.corpus == corpus.name and o.status in ("done", "reused"):
                    o.extras["prequential"] = aggregate

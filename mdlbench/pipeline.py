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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np

import mdlbench
from mdlbench import tables
from mdlbench.codelength import bits_per_byte, bits_per_char, bits_per_token, bootstrap_ratio_ci, fsum_bits
from mdlbench.corpora import Corpus, StreamHasher, open_corpus
from mdlbench.errors import InputError
from mdlbench.progress import Progress
from mdlbench.scoring.base import DocumentCode, ScoringSettings
from mdlbench.scoring.models import UNIFORM_BYTES, LoadedModel, load_model, unique_parameter_count
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
    batch_size: int = 8
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


@dataclass
class RunOutcome:
    run_id: str
    model: str
    corpus: str
    summary: dict[str, Any]
    reused: bool


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
    if options.batch_size < 1:
        raise InputError(f"--batch-size {options.batch_size}: must be >= 1")
    settings = ScoringSettings(window, stride, first or "bos", end or "eos", options.batch_size, options.per_token)
    return settings, window, stride


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


def summarize(model: str, corpus: str, codes: Sequence[DocumentCode], wall_seconds: float, *,
              bootstrap_samples: int, seed: int) -> dict[str, Any]:
    """The summary row: sums, then ratios of sums, and the document-bootstrap CI of bits/byte."""
    bits = [c.code_length_bits for c in codes]
    n_bytes_each = [c.doc.n_bytes for c in codes]
    total_bits = fsum_bits(bits)
    n_bytes = int(sum(n_bytes_each))
    n_chars = int(sum(c.doc.n_chars for c in codes))
    n_tokens = int(sum(c.n_tokens for c in codes))
    low, high = bootstrap_ratio_ci(bits, n_bytes_each, n_samples=bootstrap_samples, seed=seed)
    return {"model": model, "corpus": corpus, "n_docs": len(codes), "n_bytes": n_bytes, "n_chars": n_chars,
            "n_tokens": n_tokens, "code_length_bits": total_bits, "bits_per_byte": bits_per_byte(total_bits, n_bytes),
            "bits_per_token": bits_per_token(total_bits, n_tokens), "bits_per_char": bits_per_char(total_bits, n_chars),
            "bpb_ci_low": low, "bpb_ci_high": high,
            "n_roundtrip_failures": sum(not c.tokenizer_roundtrip_ok for c in codes),
            "tokens_per_second": n_tokens / wall_seconds if wall_seconds > 0 else math.nan,
            "wall_seconds": wall_seconds}


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


def _plan_run(model: _Model, corpus: Corpus, options: RunOptions) -> tuple[str, dict[str, Any], Any]:
    """(run_id, runs-row fields known before scoring, scorer)."""
    from mdlbench.scoring.hf import HFScorer

    common = {"corpus_identity": corpus.identity(), "text_field": options.text_field, "id_field": options.id_field,
              "errors": options.errors, "bootstrap_samples": options.bootstrap_samples, "seed": options.seed,
              "scoring_code_version": mdlbench.SCORING_CODE_VERSION}
    if model.loaded is None:
        identity = {**common, "model": UNIFORM_BYTES}
        row = {"model": UNIFORM_BYTES, "model_revision": "", "model_sha256": "", "model_format": "builtin",
               "tokenizer_sha256": "", "vocab_size": 256, "window": None, "stride": None, "first_token": "none",
               "end": "none", "protocol": options.protocol, "prefix_token_id": None, "eos_token_id": None,
               "dtype": "n/a", "device": "cpu", "batch_size": None, "n_params": 0}
        return content_address(identity), row, UniformBytesScorer(options.per_token)
    lm = model.loaded
    settings, window, stride = resolve_windowing(options, lm.context_length)
    scorer = HFScorer(lm, settings, window, stride)
    identity = {**common, "model_sha256": lm.sha256, "model_revision": lm.revision, "model_format": lm.format,
                "tokenizer_sha256": lm.tokenizer_sha256, "window": window, "stride": stride,
                "first_token": settings.first_token, "end": settings.end, "prefix": scorer.prefix_token_id,
                "eos": scorer.eos_token_id, "dtype": lm.dtype, "device_type": lm.device}
    row = {"model": lm.name, "model_revision": lm.revision, "model_sha256": lm.sha256, "model_format": lm.format,
           "tokenizer_sha256": lm.tokenizer_sha256, "vocab_size": scorer.vocab_size, "window": window,
           "stride": stride, "first_token": settings.first_token, "end": settings.end, "protocol": options.protocol,
           "prefix_token_id": scorer.prefix_token_id, "eos_token_id": scorer.eos_token_id, "dtype": lm.dtype,
           "device": lm.device, "batch_size": settings.batch_size, "n_params": unique_parameter_count(lm.model)}
    return content_address(identity), row, scorer


def score_corpus(scorer: Any, corpus: Corpus, progress: Progress | None = None) -> tuple[list[DocumentCode], str]:
    """Code every document of the corpus exactly once; returns codes in document order and the stream sha256."""
    hasher = StreamHasher()

    def indexed():
        for i, doc in enumerate(corpus.documents()):
            hasher.update(doc)
            yield i, doc

    codes: list[DocumentCode] = []
    for code in scorer.score(indexed()):
        codes.append(code)
        if progress is not None:
            progress.update(1, code.doc.n_bytes, code.n_tokens)
    codes.sort(key=lambda c: c.doc_index)
    if [c.doc_index for c in codes] != list(range(len(codes))):
        raise AssertionError("scorer lost or duplicated documents")  # an internal bug, never user input
    return codes, hasher.hexdigest()


def run_benchmark(model_specs: Sequence[str], corpus_specs: Sequence[str], options: RunOptions, out_dir: Path,
                  *, log: Callable[[str], None] | None = None) -> list[RunOutcome]:
    """Score every corpus under every model and commit one run per pair. Returns the summary rows."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out_dir = Path(out_dir)
    corpora = [open_corpus(s, text_field=options.text_field, id_field=options.id_field,
                           revision=options.corpus_revision, max_docs=options.max_docs, max_bytes=options.max_bytes,
                           errors=options.errors, data_files=options.data_files) for s in corpus_specs]
    if options.protocol == "lm-eval" and options.first_token is None:
        options = replace(options, first_token="bos", end="none")
    outcomes: list[RunOutcome] = []
    tables.recover(out_dir)
    for spec in model_specs:
        if spec != UNIFORM_BYTES:
            log(f"loading model {spec!r} ...")
        model = _Model(spec, options)
        for corpus in corpora:
            run_id, row, scorer = _plan_run(model, corpus, options)
            if tables.partition_exists(out_dir, "runs", run_id) and not options.force:
                log(f"run {run_id} ({model.name} × {corpus.name}) is already complete in {out_dir}; skipping "
                    "(--force recomputes)")
                summary = tables.read_table(out_dir, "summary")
                match = summary[summary["run_id"] == run_id]
                outcomes.append(RunOutcome(run_id, model.name, corpus.name,
                                           match.iloc[0].to_dict() if len(match) else {}, True))
                continue
            started = _now()
            progress = Progress(f"{model.name} × {corpus.name}", corpus.size_hint_bytes, enabled=options.progress)
            t0 = time.perf_counter()
            codes, corpus_sha = score_corpus(scorer, corpus, progress)
            wall = time.perf_counter() - t0
            progress.close()
            summary = summarize(model.name, corpus.name, codes, wall, bootstrap_samples=options.bootstrap_samples,
                                seed=options.seed)
            failures = summary["n_roundtrip_failures"]
            if failures:
                log(f"warning: {failures} of {len(codes)} documents of {corpus.name} do not round-trip through "
                    f"{model.name}'s tokenizer (decode(encode(text)) != text); their bits are not a valid code — "
                    "see tokenizer_roundtrip_ok in the documents table")
            run_row = {**row, "corpus": corpus.name, "corpus_sha256": corpus_sha, "corpus_source": corpus.source,
                       "valid_code": failures == 0, "errors": options.errors,
                       "bootstrap_samples": options.bootstrap_samples, "seed": options.seed, "started_at": started,
                       "finished_at": _now(), **_versions(),
                       "config_json": json.dumps({"model_spec": spec, "corpus_spec": corpus.source,
                                                  **{k: v for k, v in asdict(options).items()
                                                     if k not in ("force", "progress")}}, sort_keys=True)}
            partitions = {("runs", run_id): tables.to_arrow("runs", [run_row]),
                          ("documents", run_id): tables.to_arrow("documents", _document_rows(corpus.name, codes)),
                          ("summary", run_id): tables.to_arrow("summary", [summary])}
            if options.per_token:
                partitions[("tokens", run_id)] = tables.columns_to_arrow("tokens", _token_columns(codes))
            tables.commit(out_dir, partitions)
            outcomes.append(RunOutcome(run_id, model.name, corpus.name, summary, False))
    return outcomes

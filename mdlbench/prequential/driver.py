"""The prequential code length of a corpus under a model trained as it reads: tokenize, run each seed, commit.

``run_prequential_for_corpus`` is what ``mdlbench prequential`` and ``mdlbench run --prequential`` call. Tables:
``prequential_blocks`` and ``prequential``, partitioned by run id (results.py).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mdlbench import tables
from mdlbench.corpora import StreamHasher
from mdlbench.errors import InputError
from mdlbench.fsio import check_out_dir
from mdlbench.mdl.two_part import CHECKPOINT_DEFAULT_MAX_PARAMS
from mdlbench.mdl.weights_code import checkpoint_code, unique_state_dict
from mdlbench.prequential.estimators import (
    BlockCode,
    PrequentialConfig,
    PrequentialEstimate,
    TokenStream,
    document_order,
    estimate,
    model_factory,
    resolve_arch,
    stream_from_documents,
)
from mdlbench.prequential.results import (
    PREQUENTIAL_CODE_VERSION,
    SUMMARY_TABLE,
    aggregate_seeds,
    block_rows,
    canonical_json,
    model_shape,
    prequential_run_id,
    program_bits,
    summary_row,
    to_tables,
)
from mdlbench.prequential.schedule import proportional_byte_attribution
from mdlbench.prequential.vocab import DEFAULT_TOKENIZER, load_tokenizer, separator_id, tokenizer_files
from mdlbench.progress import Log, Progress, log_to_stderr
from mdlbench.scoring.identity import folder_weights_sha256
from mdlbench.scoring.tokens import encode, is_byte_level, roundtrip_ok, token_byte_spans


@dataclass(frozen=True)
class TokenizedCorpus:
    """Documents as token ids (in corpus order) with per-token attributed bytes; what every seed reorders."""

    name: str
    sha256: str
    doc_token_ids: list[list[int]]
    doc_token_n_bytes: list[list[int]]
    n_bytes: int  # exact Σ UTF-8 bytes of the documents
    vocab_size: int
    separator_id: int

    def stream(self, seed: int) -> TokenStream:
        order = document_order(len(self.doc_token_ids), seed)
        return stream_from_documents(self.doc_token_ids, self.doc_token_n_bytes, separator_id=self.separator_id,
                                     vocab_size=self.vocab_size, order=order)


@dataclass(frozen=True)
class PrequentialRun:
    run_id: str
    config_json: str
    estimates: tuple[PrequentialEstimate, ...]
    block_rows: list[dict[str, Any]]
    summary_rows: list[dict[str, Any]]
    aggregate: list[dict[str, Any]]


def tokenize_corpus(corpus: Any, tokenizer: Any) -> TokenizedCorpus:
    """Encode every document (special-token strings stay text), check decode(encode(s)) == s, attribute bytes.

    A document that does not round-trip makes the token stream not a code for the text: refused (METHODS §1.4).
    """
    hasher = StreamHasher()
    ids_per_doc: list[list[int]] = []
    bytes_per_doc: list[list[int]] = []
    failures: list[str] = []
    n_bytes = 0
    byte_level = is_byte_level(tokenizer)
    for doc in corpus.documents():
        hasher.update(doc)
        ids = encode(tokenizer, doc.text)
        if not roundtrip_ok(tokenizer, ids, doc.text):
            failures.append(doc.doc_id)
            continue
        spans = token_byte_spans(tokenizer, ids, doc.text, byte_level)
        doc_bytes = len(doc.text.encode("utf-8"))
        per_token = ([end - start for start, end in spans] if spans is not None
                     else proportional_byte_attribution(len(ids), doc_bytes))
        ids_per_doc.append(ids)
        bytes_per_doc.append(per_token)
        n_bytes += doc_bytes
    if failures:
        raise InputError(f"{len(failures)} document(s) do not survive decode(encode(text)) with this tokenizer, so "
                         f"their tokens are not a code for their bytes: {', '.join(map(repr, failures[:5]))}")
    vocab_size = len(tokenizer)
    return TokenizedCorpus(corpus.name, hasher.hexdigest(), ids_per_doc, bytes_per_doc, n_bytes, vocab_size,
                           separator_id(tokenizer))


def load_arch(arch: Mapping[str, Any] | str | Path | None) -> dict[str, Any] | None:
    """An architecture dict, a JSON file path (a transformers config.json works), or None for DEFAULT_ARCH."""
    if arch is None or isinstance(arch, Mapping):
        return None if arch is None else dict(arch)
    path = Path(arch)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"--arch {str(arch)!r}: cannot read it ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"--arch {str(arch)!r}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise InputError(f"--arch {str(arch)!r}: expected a JSON object")
    return data


def _checkpoint_identity(path: str) -> str:
    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"--init-from {path!r}: expected a folder written by save_pretrained")
    return f"checkpoint:{folder.resolve()} sha256:{folder_weights_sha256(folder)}"


def checkpoint_param_cost(model: Any) -> tuple[str, float, int]:
    """(param code, bits, unique parameters) of a pretrained start: what sending it would cost, shown beside a
    code length that is conditional on it. Up to ``CHECKPOINT_DEFAULT_MAX_PARAMS`` parameters: checkpoint-zstd,
    the exact weights compressed (as in a run's default two-part codes); above (zstd-19 runs at ~1 MB/s):
    naive width, every parameter at the narrowest dtype that holds it exactly (16 for bf16/fp16 weights)."""
    state = unique_state_dict(model, lossless_narrowing=True)
    n_params = sum(t.numel() for t in state.values())
    if n_params <= CHECKPOINT_DEFAULT_MAX_PARAMS:
        return "checkpoint-zstd", checkpoint_code(model).model_bits, n_params
    widths = {t.element_size() * 8 for t in state.values()}
    bits = float(sum(t.numel() * t.element_size() * 8 for t in state.values()))
    return (f"naive-{widths.pop()}" if len(widths) == 1 else "naive-mixed"), bits, n_params


def model_label(arch: Mapping[str, Any] | None, init_checkpoint: str | None) -> str:
    """The prequential model's display name: its family, layers and width (e.g. "gpt2 2x64"), or the checkpoint
    folder it starts from."""
    if init_checkpoint is not None:
        return f"from {Path(init_checkpoint).name}"
    arch = arch or {}
    layers = next((arch[k] for k in ("n_layer", "num_hidden_layers", "num_layers") if k in arch), "?")
    width = next((arch[k] for k in ("n_embd", "hidden_size", "d_model") if k in arch), "?")
    return f"{arch.get('model_type', '?')} {layers}x{width}"


def parse_seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError as exc:
        raise InputError(f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2") from exc
    return check_seeds(seeds)


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(int(s) for s in seeds)
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise InputError(f"seeds {list(seeds)!r}: need one or more distinct integers >= 0")
    return seeds


def run_prequential_for_corpus(corpus: Any, *, config: PrequentialConfig | Mapping[str, Any] | None = None,
                               arch: Mapping[str, Any] | str | Path | None = None, seeds: Sequence[int] = (0, 1, 2),
                               tokenizer: Any | None = None, init_checkpoint: str | None = None,
                               out_dir: Path | None = None, force: bool = False,
                               log: Log | None = log_to_stderr, progress: Progress | None = None) -> PrequentialRun:
    """Prequential code length of ``corpus`` (from ``mdlbench.corpora.open_corpus``) for each seed.

    Each seed fixes the document order and the model initialization. ``arch``: a transformers config dict or a
    JSON file (default ``DEFAULT_ARCH``); ``init_checkpoint``: a local pretrained folder instead (the result is
    then conditional on it, and its parameter cost is recorded beside it). ``tokenizer`` defaults to the
    257-symbol byte tokenizer (``vocab.byte_tokenizer``). With ``out_dir``, the two tables are committed atomically
    under one run id (an existing complete run is reused unless ``force``).
    """
    config = config if isinstance(config, PrequentialConfig) else PrequentialConfig.from_dict(config or {})
    seeds = check_seeds(seeds)
    if out_dir is not None:
        check_out_dir(Path(out_dir))
    if arch is not None and init_checkpoint is not None:
        raise InputError("--arch and --init-from are exclusive: a checkpoint brings its own architecture")
    tokenizer = load_tokenizer(DEFAULT_TOKENIZER) if tokenizer is None else tokenizer
    conditional_on = _checkpoint_identity(init_checkpoint) if init_checkpoint is not None else ""
    t0 = time.perf_counter()
    data = tokenize_corpus(corpus, tokenizer)
    if log:
        log(f"[prequential] {data.name}: {len(data.doc_token_ids)} documents, {data.n_bytes} bytes, "
                 f"{sum(len(d) + 1 for d in data.doc_token_ids)} tokens with separators "
                 f"(|V| = {data.vocab_size}), tokenized in {time.perf_counter() - t0:.1f}s")
    files = tokenizer_files(tokenizer)
    tokenizer_sha = hashlib.sha256(b"".join(n.encode() + b"\0" + files[n] for n in sorted(files))).hexdigest()
    if init_checkpoint is None:
        resolved_arch: dict[str, Any] | None = resolve_arch(
            load_arch(arch), vocab_size=data.vocab_size, context_tokens=config.context_tokens,
            start_id=data.separator_id)
        build = model_factory(resolved_arch)
    else:
        resolved_arch = None
        build = model_factory(init_checkpoint=init_checkpoint)
    resolved = {
        "prequential": config.to_dict(),
        "arch": resolved_arch,
        "init_checkpoint": conditional_on or None,
        "tokenizer": {"sha256": tokenizer_sha, "vocab_size": data.vocab_size, "separator_id": data.separator_id,
                      "start_id": data.separator_id},
        "corpus": {"name": data.name, "max_docs": getattr(corpus, "max_docs", None),
                   "max_bytes": getattr(corpus, "max_bytes", None)},
        "document_order": "numpy.random.default_rng(seed).permutation(n_documents)",
        "prequential_code_version": PREQUENTIAL_CODE_VERSION,
    }
    config_json = canonical_json(resolved)
    run_id = prequential_run_id(config_json, data.sha256, seeds)
    if out_dir is not None and not force and tables.partition_exists(Path(out_dir), SUMMARY_TABLE, run_id):
        rows = tables.read_partition(Path(out_dir), SUMMARY_TABLE, run_id).drop(columns="run_id").to_dict("records")
        if log:
            log(f"[prequential] run {run_id[:12]} is already complete in {out_dir}; reusing it (--force redoes)")
        return PrequentialRun(run_id, config_json, (), [], rows, aggregate_seeds(rows))
    cost = program_bits(config_json, files)
    label = model_label(resolved_arch, init_checkpoint)
    # After the reuse check: checkpoint-zstd of a 16M-parameter start takes about a minute.
    first = build(seeds[0])
    checkpoint_cost = checkpoint_param_cost(first) if init_checkpoint is not None else None
    shape = model_shape(first)
    del first
    estimates, blocks, summaries = [], [], []
    for seed in seeds:
        stream = data.stream(seed)
        on_block = None
        if progress is not None:
            progress.reset(f"prequential {config.estimator} seed {seed} × {data.name}", total_docs=None,
                           total_bytes=stream.n_bytes, total_tokens=stream.n_tokens)

            def on_block(block: BlockCode) -> None:
                progress.update(n_bytes=block.n_bytes, n_tokens=block.token_end - block.token_start)

        result = estimate(stream, config, seed, build, log=log, on_block=on_block)
        if progress is not None:
            progress.close()
        if log:
            log(f"[prequential {config.estimator} seed {seed}] L_preq {result.prequential_bits:,.1f} bits, "
                     f"L(D|final) {result.final_model_data_bits:,.1f} bits, {result.wall_seconds:.1f}s")
        estimates.append(result)
        blocks += block_rows(result, model=label, corpus=data.name)
        summaries.append(summary_row(result, model=label, corpus=data.name, n_documents=len(data.doc_token_ids),
                                     program_bits=cost, config_json=config_json, conditional_on=conditional_on,
                                     checkpoint_cost=checkpoint_cost, shape=shape,
                                     finished_at=datetime.now(timezone.utc).replace(microsecond=0)))
    if out_dir is not None:
        tables.commit(Path(out_dir), to_tables(run_id, blocks, summaries))
    return PrequentialRun(run_id, config_json, tuple(estimates), blocks, summaries, aggregate_seeds(summaries))

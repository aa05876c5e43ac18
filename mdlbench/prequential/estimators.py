"""Prequential code lengths: a model that learns as it reads, coding each token before it trains on it.

Two estimators share one token-coding rule and one training step:

* ``blockwise`` (Voita & Titov 2020; Blier & Ollivier 2018): block 1 ``[0, t_1)`` is coded with the uniform
  code (``t_1 * log2|V|``); for each later block ``[t_i, t_{i+1})`` a model trained on ``[0, t_i)`` codes it,
  either from the seeded initialization (``restart``) or continuing from the previous block's model and
  optimizer state (``continue``).
* ``online`` (one pass; Rae 2023, Bellard's NNCP): the stream in batches of ``batch_sequences`` sequences; each
  batch is coded with the parameters *before* the update on it, then one optimizer step is taken on it.

How a token is coded. The corpus is one stream of token ids: each document's ids followed by a separator id
(so the code tells the decoder where documents end). The stream is cut into a fixed grid of sequences
``[k*C, (k+1)*C)``, C = ``context_tokens``, the same grid for training and coding. Token ``x_t`` of sequence k
costs ``-log2 p(x_t | <start>, x_{kC}, ..., x_{t-1})``: it sees only earlier tokens of its own sequence, after
a fixed start symbol (the separator id, a constant the decoder knows, costing 0 bits). So the first token of
every sequence has a code too, and every token of the stream is coded exactly once (``schedule.sequence_spans``).
Within a block, the context of a block's first tokens may reach back into earlier blocks (already transmitted),
never forward: inputs are cut at the block's end.

Hyper-parameters are fixed before any data is seen (``PrequentialConfig``); there is no early stopping and no
dev set, so nothing but already-coded tokens ever influences a code. Logits are upcast to float32 for the
log-softmax (with the final log of the partition sum in float64); per-token bits are float64 and sums are
exactly rounded (``math.fsum``).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from mdlbench.codelength import nats_to_bits
from mdlbench.config import context_length_of, strict_from_mapping, validate
from mdlbench.errors import InputError, ScoringError
from mdlbench.prequential.schedule import (
    DEFAULT_BLOCK_FRACTIONS,
    batch_boundaries,
    block_boundaries,
    check_fractions,
    prequential_code_length_bits,
    sequence_spans,
    uniform_code_length_bits,
)
from mdlbench.progress import Log

Estimator = Literal["blockwise", "online"]
Mode = Literal["restart", "continue"]
TrainOn = Literal["prefix", "block"]
Coder = Literal["uniform", "model"]
ModelFactory = Callable[[int], torch.nn.Module]

IGNORE = -100  # label of positions that are not scored (padding, or context from before the range)
_LOGSOFTMAX_ROWS = 512  # rows of logits upcast at a time: bounds memory at 512 x |V| floats

# A small GPT-2 for CPU over the 257-symbol byte alphabet (prequential/vocab.py). Dropout is off: the model that
# codes must be a deterministic function of the transmitted tokens and the seed.
DEFAULT_ARCH: dict[str, Any] = {
    "model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4,
    "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
}


@dataclass(frozen=True)
class PrequentialConfig:
    """Everything the decoder must agree on besides the architecture, tokenizer and seed; fixed before the data."""

    estimator: Estimator = "blockwise"
    # blockwise: "restart" retrains from the seeded init for every block, "continue" warm-starts from the
    # previous block's model and optimizer. None resolves to "restart" (blockwise) / "continue" (online).
    mode: Mode | None = None
    # continue mode only: train on the whole prefix [0, t_i) ("prefix") or only on the newest block ("block").
    train_on: TrainOn = "prefix"
    block_fractions: tuple[float, ...] = DEFAULT_BLOCK_FRACTIONS  # cumulative block ends, fractions of n_tokens
    # blocks shorter than this merge into the next one (schedule.block_boundaries)
    min_block_tokens: int = field(default=64, metadata={"min": 1})
    first_block_coder: Coder = "uniform"  # block 1 / batch 1: uniform log2|V| per token, or the initial model
    # Defaults below were chosen for DEFAULT_ARCH on bytes on Python stdlib source, never on a corpus they code
    # (the README gives the corpus, the candidates and their results).
    # C: tokens per training/coding sequence (the model reads 1 start symbol + C-1)
    context_tokens: int = field(default=64, metadata={"min": 1})
    batch_sequences: int = field(default=8, metadata={"min": 1})  # sequences per optimizer step and coding pass
    # AdamW, constant: no schedule to tune on data not yet sent. 0 freezes the model at its initialization.
    learning_rate: float = field(default=3e-3, metadata={"min": 0})
    adam_beta1: float = field(default=0.9, metadata={"min": 0, "below": 1})
    adam_beta2: float = field(default=0.99, metadata={"min": 0, "below": 1})
    weight_decay: float = field(default=0.0, metadata={"min": 0})
    max_grad_norm: float = field(default=1.0, metadata={"min": 0})  # 0 disables clipping
    # blockwise: passes over the training range per block (online always makes one pass)
    epochs: int = field(default=6, metadata={"min": 1})
    # blockwise: at least this many optimizer steps per block, so tiny prefixes still train
    min_steps: int = field(default=8, metadata={"min": 0})

    def __post_init__(self) -> None:
        # Every field's type and range first (one line naming the key, the value and what is accepted), so that
        # no bad value reaches torch or transformers as a traceback.
        validate(self, name=lambda key: f"prequential {key} =")
        object.__setattr__(self, "block_fractions", tuple(float(f) for f in self.block_fractions))
        if self.estimator == "online" and self.mode == "restart":
            raise InputError("prequential mode 'restart' is for the blockwise estimator; online always continues")
        if self.train_on == "block" and self.resolved_mode != "continue":
            raise InputError("prequential train_on 'block' needs mode 'continue' (a restarted model must see the "
                             "whole prefix)")
        try:
            check_fractions(self.block_fractions)
        except ValueError as exc:  # "block fractions [...]: why": name the key as it is spelled in a config
            raise InputError(f"prequential block_fractions{str(exc).removeprefix('block fractions')}") from None

    @property
    def resolved_mode(self) -> Mode:
        if self.mode is not None:
            return self.mode
        return "restart" if self.estimator == "blockwise" else "continue"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "prequential config") -> PrequentialConfig:
        """Build from a JSON-like dict (a --config file, a mapping passed to the driver): an unknown key, a value
        of the wrong type or out of range is one InputError naming ``where``, the key and what is accepted."""
        try:
            return strict_from_mapping(cls, data, where)
        except InputError as exc:
            message = str(exc)
            if not message.startswith(where):
                message = f"{where}: {message.removeprefix('prequential ')}"
            raise InputError(message) from None

    def to_dict(self) -> dict[str, Any]:
        """The resolved config (mode filled in), JSON-ready."""
        out = dataclasses.asdict(self)
        out["mode"] = self.resolved_mode
        out["block_fractions"] = list(self.block_fractions)
        return out


# --------------------------------------------------------------------------------------------- token stream


@dataclass(frozen=True, eq=False)
class TokenStream:
    """The coded data: token ids in coding order, and the UTF-8 bytes attributed to each token."""

    token_ids: np.ndarray  # int64 (N,)
    token_n_bytes: np.ndarray  # int64 (N,), sums to the corpus's exact UTF-8 byte count
    vocab_size: int  # |V| of the uniform code; every id is < vocab_size
    start_id: int  # fixed start symbol read before the first token of every sequence (never coded)
    n_documents: int = 0

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(self.token_ids, dtype=np.int64)
        n_bytes = np.ascontiguousarray(self.token_n_bytes, dtype=np.int64)
        if ids.ndim != 1 or ids.shape != n_bytes.shape:
            raise ValueError("token_ids and token_n_bytes must be 1-D arrays of the same length")
        if len(ids) and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise InputError(f"token ids must lie in [0, {self.vocab_size}); got [{ids.min()}, {ids.max()}]")
        if not 0 <= self.start_id < self.vocab_size:
            raise InputError(f"start id {self.start_id} is outside the vocabulary [0, {self.vocab_size})")
        object.__setattr__(self, "token_ids", ids)
        object.__setattr__(self, "token_n_bytes", n_bytes)

    @property
    def n_tokens(self) -> int:
        return int(len(self.token_ids))

    @property
    def n_bytes(self) -> int:
        return int(self.token_n_bytes.sum())

    def bytes_in(self, token_start: int, token_end: int) -> int:
        return int(self.token_n_bytes[token_start:token_end].sum())

    @classmethod
    def from_ids(cls, token_ids: Sequence[int], vocab_size: int, start_id: int = 0) -> TokenStream:
        """A bare stream (tests, synthetic data): no bytes attributed."""
        ids = np.asarray(token_ids, dtype=np.int64)
        return cls(ids, np.zeros_like(ids), vocab_size, start_id)


def document_order(n_documents: int, seed: int) -> list[int]:
    """The seeded order in which documents are coded: a permutation of range(n_documents)."""
    return [int(i) for i in np.random.default_rng(seed).permutation(n_documents)]


def stream_from_documents(doc_token_ids: Sequence[Sequence[int]], doc_token_n_bytes: Sequence[Sequence[int]], *,
                          separator_id: int, vocab_size: int, order: Sequence[int] | None = None,
                          start_id: int | None = None) -> TokenStream:
    """Concatenate documents in ``order``, each followed by ``separator_id`` (0 bytes attributed to it).

    The start symbol defaults to the separator: a sequence then begins as if a document had just ended.
    """
    order = range(len(doc_token_ids)) if order is None else order
    ids: list[int] = []
    n_bytes: list[int] = []
    for d in order:
        if len(doc_token_ids[d]) != len(doc_token_n_bytes[d]):
            raise ValueError(f"document {d}: {len(doc_token_ids[d])} ids but {len(doc_token_n_bytes[d])} byte counts")
        ids.extend(doc_token_ids[d])
        ids.append(separator_id)
        n_bytes.extend(doc_token_n_bytes[d])
        n_bytes.append(0)
    return TokenStream(np.asarray(ids, dtype=np.int64), np.asarray(n_bytes, dtype=np.int64), vocab_size,
                       separator_id if start_id is None else start_id, n_documents=len(order))


# ---------------------------------------------------------------------------------------------------- models


def resolve_arch(arch: Mapping[str, Any] | None, *, vocab_size: int, context_tokens: int,
                 start_id: int) -> dict[str, Any]:
    """The architecture dict actually built: the user's keys, plus the vocabulary size, and for the default
    architecture a position table of exactly ``context_tokens``. Raises InputError for what cannot work."""
    resolved = dict(DEFAULT_ARCH if arch is None else arch)
    if "model_type" not in resolved:
        raise InputError("--arch: the config needs a 'model_type' key (e.g. \"gpt2\", \"llama\"), as in a "
                         "transformers config.json")
    given = resolved.get("vocab_size")
    if given is not None and int(given) < vocab_size:
        raise InputError(f"--arch: vocab_size {given} is smaller than the tokenizer's {vocab_size}; leave it out "
                         "(it is set from the tokenizer)")
    resolved.setdefault("vocab_size", vocab_size)
    if arch is None:
        resolved["n_positions"] = context_tokens
    for key in ("bos_token_id", "eos_token_id"):
        resolved.setdefault(key, start_id)
    config = _hf_config(resolved)
    positions = context_length_of(config)
    if positions is not None and positions < context_tokens:
        raise InputError(f"--arch: the model has {positions} positions but context_tokens is {context_tokens}")
    return resolved


def _hf_config(arch: Mapping[str, Any]) -> Any:
    from transformers import AutoConfig

    values = dict(arch)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    values.pop("transformers_version", None)
    try:
        return AutoConfig.for_model(model_type, **values)
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--arch: transformers cannot build a {model_type!r} config from it ({exc})") from exc


def model_factory(arch: Mapping[str, Any] | None = None, *, init_checkpoint: str | None = None) -> ModelFactory:
    """``seed -> fresh float32 model``: built from ``arch`` after ``torch.manual_seed(seed)``, or a copy of the
    checkpoint (a local ``save_pretrained`` folder) whatever the seed — the code is then conditional on it."""
    from transformers import AutoModelForCausalLM

    if init_checkpoint is not None:
        try:
            base = AutoModelForCausalLM.from_pretrained(init_checkpoint, dtype=torch.float32)
        except (OSError, ValueError) as exc:
            raise InputError(f"--init-from {init_checkpoint!r}: not a loadable causal-LM folder ({exc})") from exc
        return lambda seed: copy.deepcopy(base)
    if arch is None:
        raise ValueError("model_factory needs arch (use resolve_arch) or init_checkpoint")
    config = _hf_config(arch)
    try:
        AutoModelForCausalLM.from_config(config)  # fail now, not in the middle of a run
    except ValueError as exc:
        raise InputError(f"--arch: {arch.get('model_type')!r} is not a causal-LM architecture ({exc})") from exc

    def build(seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)

    return build


def _output_vocab(model: torch.nn.Module) -> int:
    return int(model.get_output_embeddings().weight.shape[0])


# ------------------------------------------------------------------------------------------ coding, training


def _batch_tensors(ids: np.ndarray, spans: Sequence[tuple[int, int, int]],
                   start_id: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Right-padded inputs and labels for the given sequences (``schedule.sequence_spans``).

    Row i reads ``[start, x_s, ..., x_{e-2}]`` and predicts ``[x_s, ..., x_{e-1}]``; labels before
    ``first_scored`` and on padding are IGNORE. Padding sits after every real position, and attention is
    causal, so it never changes a scored prediction.
    """
    width = max(end - seq_start for seq_start, _, end in spans)
    inputs = torch.full((len(spans), width), start_id, dtype=torch.long)  # (B, L)
    labels = torch.full((len(spans), width), IGNORE, dtype=torch.long)  # (B, L)
    n_scored = 0
    for i, (seq_start, first, end) in enumerate(spans):
        n = end - seq_start
        inputs[i, 1:n] = torch.from_numpy(ids[seq_start:end - 1])
        labels[i, first - seq_start:n] = torch.from_numpy(ids[first:end])
        n_scored += end - first
    return inputs, labels, n_scored


def _nll_nats(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-ln softmax(logits)[target] per row, float64 (M,). logits: (M, V) float32.

    The exponentials are summed in float32 (the log-softmax precision), then ``max + log(sum)`` is taken in
    float64: for all-zero logits this is exactly ``ln V`` in float64, so a uniform model costs log2|V| per token.
    """
    out = torch.empty(len(targets), dtype=torch.float64)
    for r in range(0, len(targets), _LOGSOFTMAX_ROWS):
        rows = logits[r:r + _LOGSOFTMAX_ROWS]  # (m, V) float32
        peak = rows.max(dim=-1).values  # (m,)
        total = torch.exp(rows - peak[:, None]).sum(dim=-1)  # (m,) float32, in [1, V]
        target = rows.gather(1, targets[r:r + _LOGSOFTMAX_ROWS, None]).squeeze(1)  # (m,)
        out[r:r + _LOGSOFTMAX_ROWS] = peak.double() + torch.log(total.double()) - target.double()
    if not torch.isfinite(out).all():
        raise ScoringError("the model produced non-finite log-probabilities (NaN/inf logits); lower the learning "
                           "rate or enable gradient clipping")
    return out


def code_tokens_bits(model: torch.nn.Module, stream: TokenStream, token_start: int, token_end: int, *,
                     context_tokens: int, batch_sequences: int) -> np.ndarray:
    """Per-token code lengths ``-log2 p(x_t | <start>, x_{kC..t-1})`` for t in ``[token_start, token_end)``,
    float64 (token_end - token_start,). Reads no token at or after ``token_end``."""
    out = np.empty(token_end - token_start, dtype=np.float64)
    spans = sequence_spans(token_start, token_end, context_tokens)
    model.eval()
    pos = 0
    with torch.no_grad():
        for b in range(0, len(spans), batch_sequences):
            inputs, labels, n_scored = _batch_tensors(stream.token_ids, spans[b:b + batch_sequences],
                                                      stream.start_id)
            logits = model(input_ids=inputs).logits  # (B, L, V)
            scored = labels != IGNORE  # (B, L); row-major order = stream order
            nats = _nll_nats(logits[scored].float(), labels[scored])
            out[pos:pos + n_scored] = nats_to_bits(nats.numpy())
            pos += n_scored
    assert pos == len(out), "every token in the range is coded exactly once"
    return out


def _make_optimizer(model: torch.nn.Module, config: PrequentialConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay,
                             betas=(config.adam_beta1, config.adam_beta2), foreach=False)


def train_on_range(model: torch.nn.Module, optimizer: torch.optim.Optimizer, stream: TokenStream,
                   token_start: int, token_end: int, *, config: PrequentialConfig, rng: np.random.Generator,
                   epochs: int, min_steps: int) -> int:
    """Optimizer steps on the grid sequences of ``[token_start, token_end)`` (earlier tokens of a sequence are
    context only); ``max(min_steps, epochs * n_batches)`` steps over seeded shuffles, each batch's sequences in
    stream order. Loss: mean -ln p over the batch's scored tokens. Returns the token-steps trained."""
    spans = sequence_spans(token_start, token_end, config.context_tokens)
    if not spans:
        return 0
    size = config.batch_sequences
    n_steps = max(min_steps, epochs * math.ceil(len(spans) / size))
    model.train()
    steps = tokens = 0
    while steps < n_steps:
        perm = rng.permutation(len(spans))
        for b in range(0, len(perm), size):
            batch = [spans[j] for j in sorted(perm[b:b + size])]
            inputs, labels, n_scored = _batch_tensors(stream.token_ids, batch, stream.start_id)
            logits = model(input_ids=inputs).logits  # (B, L, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                   reduction="sum") / n_scored
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            optimizer.step()
            steps += 1
            tokens += n_scored
            if steps >= n_steps:
                break
    return tokens


@contextmanager
def deterministic_torch() -> Iterator[None]:
    """Deterministic kernels for the duration (restored afterwards): the decoder must recompute every model."""
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


# ---------------------------------------------------------------------------------------------- estimators


@dataclass(frozen=True)
class BlockCode:
    """One block (blockwise) or batch (online): its tokens, who coded them, and the training behind the coder."""

    block_index: int
    token_start: int
    token_end: int
    n_bytes: int
    coder: Coder
    code_length_bits: float
    train_tokens: int  # token-steps of the training that produced this block's coder (0 for the uniform code)
    train_seconds: float


OnBlock = Callable[["BlockCode"], None]  # called as each block (or online batch) is coded


@dataclass(frozen=True)
class PrequentialEstimate:
    """L_preq of one seed, with its blocks, and L(D | θ_final) of the corpus under the final model."""

    estimator: Estimator
    mode: Mode
    seed: int
    vocab_size: int
    n_tokens: int
    n_bytes: int
    blocks: tuple[BlockCode, ...]
    final_model_data_bits: float
    wall_seconds: float

    @property
    def prequential_bits(self) -> float:
        return prequential_code_length_bits([b.code_length_bits for b in self.blocks])

    @property
    def uniform_bits(self) -> float:
        return uniform_code_length_bits(self.n_tokens, self.vocab_size)

    @property
    def model_information_bits(self) -> float:
        """L_preq − L(D|θ_final): what the trained parameters know about the data (Blier & Ollivier)."""
        return self.prequential_bits - self.final_model_data_bits


def _report(log: Log | None, seed: int, estimator: str, block: BlockCode, n_blocks: int,
            total_bits: float) -> None:
    if log is None:
        return
    n = block.token_end - block.token_start
    log(f"[prequential {estimator} seed {seed}] block {block.block_index + 1}/{n_blocks} tokens "
             f"[{block.token_start}, {block.token_end}) coder={block.coder} trained {block.train_tokens} "
             f"token-steps in {block.train_seconds:.1f}s: {block.code_length_bits:.1f} bits "
             f"({block.code_length_bits / max(n, 1):.3f} bits/token); L_preq so far {total_bits:.1f} bits")


def _check_model(model: torch.nn.Module, stream: TokenStream, context_tokens: int) -> None:
    if _output_vocab(model) < stream.vocab_size:
        raise InputError(f"the model's output vocabulary ({_output_vocab(model)}) is smaller than the "
                         f"tokenizer's ({stream.vocab_size})")
    positions = context_length_of(model.config) if hasattr(model, "config") else None
    if positions is not None and positions < context_tokens:
        raise InputError(f"the model has {positions} positions but context_tokens is {context_tokens}")


def run_blockwise(stream: TokenStream, config: PrequentialConfig, seed: int, build_model: ModelFactory, *,
                  boundaries: Sequence[int] | None = None, log: Log | None = None,
                  on_block: OnBlock | None = None) -> PrequentialEstimate:
    """Blockwise prequential code of ``stream`` (block ends from ``config`` unless ``boundaries`` are given).

    Block 1 costs ``t_1 * log2|V|`` (or is coded by the seeded initial model with first_block_coder="model");
    block i+1 is coded by a model trained on ``[0, t_i)`` (continue + train_on="block": on ``[t_{i-1}, t_i)``
    after the previous model). The final model is trained the same way on ``[0, n)`` and codes the whole stream.
    """
    began = time.perf_counter()
    mode = config.resolved_mode
    n = stream.n_tokens
    bounds = list(block_boundaries(n, config.block_fractions, config.min_block_tokens)
                  if boundaries is None else boundaries)
    if bounds[0] != 0 or bounds[-1] != n or any(a >= b for a, b in pairwise(bounds)):
        raise ValueError(f"boundaries must increase strictly from 0 to {n}")
    code_kw = {"context_tokens": config.context_tokens, "batch_sequences": config.batch_sequences}
    blocks: list[BlockCode] = []
    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None

    def train_for(index: int, token_end: int) -> tuple[int, float]:
        """Bring ``model`` to the coder of the data after ``token_end``; block ``index`` is the next to code."""
        nonlocal model, optimizer
        t0 = time.perf_counter()
        if model is None or mode == "restart":
            model = build_model(seed)
            _check_model(model, stream, config.context_tokens)
            optimizer = _make_optimizer(model, config)
        train_start = bounds[index - 1] if config.train_on == "block" else 0
        rng = np.random.default_rng((seed, index))
        tokens = train_on_range(model, optimizer, stream, train_start, token_end, config=config, rng=rng,
                                epochs=config.epochs, min_steps=config.min_steps)
        return tokens, time.perf_counter() - t0

    with deterministic_torch():
        for i, (a, b) in enumerate(pairwise(bounds)):
            if i == 0 and config.first_block_coder == "uniform":
                block = BlockCode(0, a, b, stream.bytes_in(a, b), "uniform",
                                  uniform_code_length_bits(b - a, stream.vocab_size), 0, 0.0)
            else:
                if i == 0:  # the seeded initial model codes block 1; it is trained on nothing
                    t0 = time.perf_counter()
                    model = build_model(seed)
                    _check_model(model, stream, config.context_tokens)
                    optimizer = _make_optimizer(model, config)
                    tokens, seconds = 0, time.perf_counter() - t0
                else:
                    tokens, seconds = train_for(i, a)
                bits = math.fsum(code_tokens_bits(model, stream, a, b, **code_kw).tolist())
                block = BlockCode(i, a, b, stream.bytes_in(a, b), "model", bits, tokens, seconds)
            blocks.append(block)
            if on_block is not None:
                on_block(block)
            _report(log, seed, "blockwise", block, len(bounds) - 1,
                    prequential_code_length_bits([x.code_length_bits for x in blocks]))
        final_bits = 0.0
        if n > 0:
            train_for(len(bounds) - 1, n)
            final_bits = math.fsum(code_tokens_bits(model, stream, 0, n, **code_kw).tolist())
    return PrequentialEstimate("blockwise", mode, seed, stream.vocab_size, n, stream.n_bytes, tuple(blocks),
                               final_bits, time.perf_counter() - began)


def run_online(stream: TokenStream, config: PrequentialConfig, seed: int, build_model: ModelFactory, *,
               log: Log | None = None, on_block: OnBlock | None = None) -> PrequentialEstimate:
    """One pass: batch b (``batch_sequences`` grid sequences) is coded by θ_{b-1}, then θ_b = one AdamW step on it.

    L_preq = Σ_b L(batch b | θ_{b-1}), with θ_0 the seeded init (batch 1 is uniform with first_block_coder=
    "uniform"). Equals ``run_blockwise`` with ``boundaries=batch_boundaries(...)``, mode "continue",
    train_on "block", epochs 1, min_steps 1. L(D | θ_final) codes the stream with the parameters after the pass.
    """
    began = time.perf_counter()
    n = stream.n_tokens
    bounds = batch_boundaries(n, config.batch_sequences * config.context_tokens)
    code_kw = {"context_tokens": config.context_tokens, "batch_sequences": config.batch_sequences}
    blocks: list[BlockCode] = []
    with deterministic_torch():
        model = build_model(seed)
        _check_model(model, stream, config.context_tokens)
        optimizer = _make_optimizer(model, config)
        last_tokens, last_seconds = 0, 0.0
        for i, (a, b) in enumerate(pairwise(bounds)):
            if i == 0 and config.first_block_coder == "uniform":
                block = BlockCode(0, a, b, stream.bytes_in(a, b), "uniform",
                                  uniform_code_length_bits(b - a, stream.vocab_size), 0, 0.0)
            else:
                bits = math.fsum(code_tokens_bits(model, stream, a, b, **code_kw).tolist())
                block = BlockCode(i, a, b, stream.bytes_in(a, b), "model", bits, last_tokens, last_seconds)
            blocks.append(block)
            # Only now, after batch i is coded, may the model learn from it.
            t0 = time.perf_counter()
            last_tokens = train_on_range(model, optimizer, stream, a, b, config=config,
                                         rng=np.random.default_rng((seed, i + 1)), epochs=1, min_steps=1)
            last_seconds = time.perf_counter() - t0
            if on_block is not None:
                on_block(block)
            _report(log, seed, "online", block, len(bounds) - 1,
                    prequential_code_length_bits([x.code_length_bits for x in blocks]))
        final_bits = math.fsum(code_tokens_bits(model, stream, 0, n, **code_kw).tolist()) if n else 0.0
    return PrequentialEstimate("online", "continue", seed, stream.vocab_size, n, stream.n_bytes, tuple(blocks),
                               final_bits, time.perf_counter() - began)


ESTIMATORS: Mapping[str, Callable[..., PrequentialEstimate]] = {"blockwise": run_blockwise, "online": run_online}


def estimate(stream: TokenStream, config: PrequentialConfig, seed: int, build_model: ModelFactory, *,
             log: Log | None = None, on_block: OnBlock | None = None) -> PrequentialEstimate:
    """Run the configured estimator for one seed."""
    if seed < 0:
        raise InputError(f"seed {seed}: must be >= 0")
    return ESTIMATORS[config.estimator](stream, config, seed, build_model, log=log, on_block=on_block)

"""Lockstep batched coding: the documents of a chunk side by side, one prediction per document per step.

What each document codes is the stream ``mdlbench run`` scores (coder.py): ``stream[u + 1]`` is predicted from
``stream[w.input_start : u + 1]`` where w is the window of ``plan_windows(M, window, stride)`` that owns u.
plan.py fixes which document each batch row holds at each step. Per step:

* every row that continues its window reads one token ``stream[u]`` with the KV cache, all rows in one batched
  forward (rows that restart take part with a dummy token, and their outputs are replaced);
* a row at the first prediction of a window (a document's u = 0, or u = w.score_start of a later window) gets a
  fresh cache: its context ``stream[w.input_start : u + 1]`` is read in one forward without cache, one forward per
  distinct context length among such rows, so no prefill is ever padded, and its keys and values are written into
  the row's part of the batch cache;
* the batch cache (``_BatchCache``) keeps every row's keys and values in preallocated buffers, right-aligned at a
  shared column, each row's columns left of its window hidden by the attention mask; a step writes one column in
  place. Position ids are each row's position within its window, as in the scorer's forward over that window; the
  causal order of the padded cache is each row's own order, because its entries are contiguous.

Rows: the last position's logits of all rows, as one (R, V) float32 tensor (head.py); ``p = softmax(logits)`` in
float32, then each row's symbol is coded in two levels, its block and its place in the block (rows.py), all
handed to constriction without a float64 copy (its Categorical gives every entry at least 2^-24 of the 24-bit
range). Ideal bits are −log2 (p[target] / Σ p) of those same rows in float64 (rows.ideal_bits).

Each document has its own range coder, so its payload decodes on its own given the chunk's rows; a row's values
depend on the batch layout (shape, padding) but not on the values in other rows, so both sides must replay the
same plan and the same settings, nothing more.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mdlbench.codelength import fsum_bits, uniform_bits
from mdlbench.coding.head import plain_head
from mdlbench.coding.plan import Assignment, assign_slots
from mdlbench.coding.rows import block_masses, block_symbols, ideal_bits, probability_rows
from mdlbench.errors import ScoringError
from mdlbench.scoring.models import LoadedModel
from mdlbench.windowing import Window, plan_windows

ProgressFn = Callable[[int, int], None]  # (symbols done, symbols total)
PLACEHOLDER_TOKEN = 0  # model input for a document whose payload is known to be damaged (not decoded)


@dataclass(frozen=True, slots=True)
class StreamLayout:
    """How n text tokens become a coded stream; all fields are recorded in the container."""

    window: int
    stride: int
    first_token: str  # "bos" | "uniform"
    prefix_id: int | None
    eos_id: int | None
    vocab_size: int

    def n_stream(self, n_tokens: int) -> int:
        return (self.prefix_id is not None) + n_tokens + (self.eos_id is not None)

    def n_predictions(self, n_tokens: int) -> int:
        return max(0, self.n_stream(n_tokens) - 1)

    def uniform_first(self, n_tokens: int) -> bool:
        return self.first_token == "uniform" and self.n_stream(n_tokens) > 0

    def n_symbols(self, n_tokens: int) -> int:
        return self.n_predictions(n_tokens) + self.uniform_first(n_tokens)

    def windows(self, n_tokens: int) -> list[Window]:
        return plan_windows(self.n_predictions(n_tokens), self.window, self.stride)

    def stream(self, ids: Sequence[int]) -> list[int]:
        return ([self.prefix_id] if self.prefix_id is not None else []) + list(ids) + (
            [self.eos_id] if self.eos_id is not None else [])


@dataclass
class _Doc:
    """A document while its chunk is coded: its stream so far, its windows, and its running window."""

    stream: list[int]
    windows: list[Window]
    n_predictions: int
    window_k: int = -1  # index of the window the last prediction belonged to
    seconds: float = 0.0
    bits: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def restart_context(self, u: int) -> list[int] | None:
        """The window context if prediction u starts a window, else None."""
        k = self.window_k + 1
        if k < len(self.windows) and self.windows[k].score_start == u:
            self.window_k = k
            return self.stream[self.windows[k].input_start: u + 1]
        return None


def _config_int(config: Any, *names: str) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def kv_bytes_per_token(model: Any) -> int:
    """Bytes of keys and values one cached token takes in every layer (for the auto batch size)."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = _config_int(cfg, "num_hidden_layers", "n_layer") or 1
    heads = _config_int(cfg, "num_attention_heads", "n_head") or 1
    kv_heads = _config_int(cfg, "num_key_value_heads") or heads
    width = _config_int(cfg, "hidden_size", "n_embd", "d_model") or 0
    head_dim = _config_int(cfg, "head_dim") or max(1, width // heads)
    return 2 * layers * kv_heads * head_dim * next(model.parameters()).element_size()


def cache_capacity(window: int) -> int:
    """Columns of the batch cache: a window plus slack, so the active columns move left once per window / 4 steps."""
    return window + max(16, window // 4) + 1


class _BatchCache:
    """Keys and values of every row in preallocated (R, heads, capacity, head_dim) buffers, one pair per layer.

    All rows write their next token at the shared column ``end``; row r's window occupies the columns
    [end - n_valid[r], end): right-aligned and contiguous, so the causal order is the row's own order. Attention
    reads the view [start, end), start = end - max(n_valid), under a mask hiding the columns left of each row's
    window (keys of a row's earlier windows, or never written: masked to weight exactly 0, so they never change a
    row). When ``end`` reaches the capacity, the active columns move to the left edge.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.keys: list[Any] = []  # per layer (R, heads, capacity, head_dim)
        self.values: list[Any] = []
        self.end = 0
        self.n_valid: list[int] = []
        self.hf: Any = None  # the transformers Cache whose layers read and write these buffers

    @property
    def start(self) -> int:
        return self.end - max(self.n_valid, default=0)

    def allocate(self, n_rows: int, layers: list[tuple[Any, Any]], end: int) -> None:
        import torch

        self.keys = [torch.empty((n_rows, k.shape[1], self.capacity, k.shape[3]), dtype=k.dtype, device=k.device)
                     for k, _ in layers]
        self.values = [torch.empty((n_rows, v.shape[1], self.capacity, v.shape[3]), dtype=v.dtype, device=v.device)
                       for _, v in layers]
        self.end = end
        self.n_valid = [0] * n_rows
        self.hf = _buffer_cache(self)

    def keep_rows(self, rows: Sequence[int]) -> None:
        import torch

        index = torch.tensor(rows, dtype=torch.long, device=self.keys[0].device)
        self.keys = [k.index_select(0, index) for k in self.keys]
        self.values = [v.index_select(0, index) for v in self.values]
        self.n_valid = [self.n_valid[r] for r in rows]

    def make_room(self, longest_context: int) -> None:
        """Ensure column ``end`` is free (end < capacity) and a context of that length fits left of end + 1."""
        width = self.end - self.start
        new_end = self.end
        if self.end + 1 > self.capacity:
            new_end = width
        new_end = max(new_end, longest_context - 1)
        if new_end != self.end:
            start = self.start
            for buffers in (self.keys, self.values):
                for t in buffers:
                    t[:, :, new_end - width: new_end] = t[:, :, start: self.end].clone()
            self.end = new_end

    def write(self, rows: Sequence[int], layers: list[tuple[Any, Any]], length: int) -> None:
        """Rows that start a window: their prefill keys and values (n, heads, length, head_dim) end at ``end``."""
        import torch

        index = torch.tensor(rows, dtype=torch.long, device=self.keys[0].device)
        for li, (k, v) in enumerate(layers):
            self.keys[li][index, :, self.end - length: self.end] = k
            self.values[li][index, :, self.end - length: self.end] = v
        for r in rows:
            self.n_valid[r] = length

    def mask(self, extra: int) -> Any:
        """(R, width + extra) int64: 1 on each row's window (plus ``extra`` new columns), 0 on the padding."""
        import torch

        device = self.keys[0].device
        cols = torch.arange(self.start, self.end + extra, device=device)[None, :]
        first = torch.tensor([self.end - n for n in self.n_valid], device=device)[:, None]
        return (cols >= first).long()

    def padded(self) -> bool:
        return min(self.n_valid) != max(self.n_valid)


def _buffer_cache(batch: _BatchCache) -> Any:
    """A transformers DynamicCache whose layers write each step's keys and values into ``batch``'s buffers at
    column ``end`` and hand attention views of [start, end + 1), where DynamicLayer would concatenate (copying the
    whole cache every step). Needs transformers' cache layers (``cache_utils.DynamicLayer``, 4.56 and later)."""
    try:
        from transformers.cache_utils import DynamicCache, DynamicLayer
    except ImportError as exc:
        raise ScoringError("real coding needs transformers >= 4.56 (cache layers); upgrade transformers") from exc

    class BufferLayer(DynamicLayer):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index
            self.is_initialized = True
            self.device = batch.keys[index].device
            self.sync()

        def sync(self) -> None:
            self.keys = batch.keys[self.index][:, :, batch.start: batch.end]
            self.values = batch.values[self.index][:, :, batch.start: batch.end]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if key_states.shape[2] != 1:
                raise RuntimeError("the batch cache takes one token per row and step")
            col = batch.end
            batch.keys[self.index][:, :, col: col + 1] = key_states
            batch.values[self.index][:, :, col: col + 1] = value_states
            self.keys = batch.keys[self.index][:, :, batch.start: col + 1]
            self.values = batch.values[self.index][:, :, batch.start: col + 1]
            return self.keys, self.values

    cache = DynamicCache()
    cache.layers = [BufferLayer(i) for i in range(len(batch.keys))]
    cache.layer_class_to_replicate = None
    return cache


class LockstepPredictor:
    """Rows of logits for a batch of documents, one prediction each per call (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, window: int) -> None:
        import torch

        self._torch = torch
        self._model = loaded.model
        self._device = torch.device(loaded.device)
        params = inspect.signature(type(loaded.model).forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        self.cache = _BatchCache(cache_capacity(window))
        self._head = plain_head(loaded.model, self._device)

    def _forward(self, ids: Any, *, cache: Any = None, mask: Any = None, positions: Any = None) -> tuple[Any, Any]:
        """(logits (R, V) of the last position, the cache the model returned)."""
        kwargs = {self._cache_kwarg: cache} if cache is not None else {}
        if self._head is None:
            out = self._model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                              logits_to_keep=1, **kwargs)
            logits = out.logits[:, -1, :]
        else:
            out = self._model.base_model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
                                         **kwargs)
            logits = self._head.apply(out.last_hidden_state[:, -1, :])  # (R, V)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = out.past_key_values
        return logits, new_cache

    def step(self, tokens: Sequence[int], old_rows: Sequence[int], contexts: dict[int, list[int]]) -> Any:
        """Logits (R, V) of the new rows.

        ``old_rows[r]`` is the row that new row r occupied at the previous step (rows only ever leave, at the end of
        a chunk; -1 before the first step). A row in ``contexts`` starts a window with that context; every other
        row continues its window with ``tokens[r]``.
        """
        torch = self._torch
        cache, device = self.cache, self._device
        n_rows = len(old_rows)
        cont = [r for r in range(n_rows) if r not in contexts]
        step_logits = None
        if cache.keys:
            if list(old_rows) != list(range(len(cache.n_valid))):
                cache.keep_rows(old_rows)
            cache.make_room(max((len(c) for c in contexts.values()), default=0))
            if cont:  # one batched step over every row; the rows that restart get theirs replaced below
                ids = torch.tensor([tokens[r] if r not in contexts else 0 for r in range(n_rows)], dtype=torch.long,
                                   device=device)[:, None]
                positions = torch.tensor([n if r not in contexts else 0 for r, n in enumerate(cache.n_valid)],
                                         dtype=torch.long, device=device)[:, None]
                for layer in cache.hf.layers:
                    layer.sync()
                mask = cache.mask(1) if cache.padded() or contexts else None
                step_logits, _ = self._forward(ids, cache=cache.hf, mask=mask, positions=positions)
            cache.end += 1
            for r in cont:
                cache.n_valid[r] += 1
        by_length: dict[int, list[int]] = {}
        for r in sorted(contexts):
            by_length.setdefault(len(contexts[r]), []).append(r)
        prefill = []
        for length, rows in sorted(by_length.items()):
            ids = torch.tensor([contexts[r] for r in rows], dtype=torch.long, device=device)
            logits, fresh = self._forward(ids)
            layers = _layers(fresh)
            if not cache.keys:
                cache.allocate(n_rows, layers, max(by_length))
            cache.write(rows, layers, length)
            prefill.append((rows, logits))
        for layer in cache.hf.layers:
            layer.sync()
        if not prefill:
            return step_logits
        if step_logits is None:
            first = prefill[0][1]
            step_logits = torch.empty((n_rows, first.shape[-1]), dtype=first.dtype, device=device)
        for rows, logits in prefill:
            step_logits[torch.tensor(rows, dtype=torch.long, device=device)] = logits
        return step_logits


def _layers(cache: Any) -> list[tuple[Any, Any]]:
    layers = getattr(cache, "layers", None)
    if layers is not None:
        return [(layer.keys, layer.values) for layer in layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # transformers 4.x


@dataclass(frozen=True, slots=True)
class EncodedDoc:
    payload: bytes  # the range coder's 32-bit words, little-endian
    ideal_bits: float  # Σ −log2 p of the coded symbols, from the rows the coder was given (ideal_bits)
    n_symbols: int
    seconds: float  # this document's share of the chunk's wall time (each step split equally among its rows)


def _family() -> Any:
    import constriction  # its submodules are native attributes, not importable modules

    return constriction.stream.model.Categorical(perfect=False)


def _uniform_row(vocab_size: int) -> np.ndarray:
    return np.ones((1, vocab_size), dtype=np.float32)


class _EncodeSide:
    def __init__(self, docs: list[_Doc], layout: StreamLayout) -> None:
        import constriction

        self.docs = docs
        self.layout = layout
        self.family = _family()
        self.encoders = [constriction.stream.queue.RangeEncoder() for _ in docs]
        self.first_bits = [0.0] * len(docs)

    def first(self, d: int) -> None:
        self.encoders[d].encode(np.array(self.docs[d].stream[:1], dtype=np.int32), self.family,
                                _uniform_row(self.layout.vocab_size))
        self.first_bits[d] = uniform_bits(self.layout.vocab_size)


class _DecodeSide:
    def __init__(self, docs: list[_Doc], payloads: Sequence[bytes | None], layout: StreamLayout) -> None:
        import constriction

        self.docs = docs
        self.layout = layout
        self.family = _family()
        self.decoders = [None if p is None else constriction.stream.queue.RangeDecoder(
            np.frombuffer(p, dtype="<u4").astype(np.uint32)) for p in payloads]

    def first(self, d: int) -> None:
        dec = self.decoders[d]
        symbol = int(dec.decode(self.family, _uniform_row(self.layout.vocab_size))[0]) if dec else PLACEHOLDER_TOKEN
        self.docs[d].stream.append(symbol)


def _run(loaded: LoadedModel, docs: list[_Doc], side: _EncodeSide | _DecodeSide, batch_size: int,
         progress: ProgressFn | None, stop_after: int | None = None) -> None:
    """Drive the plan: per step, rows -> logits -> probabilities -> the side codes one symbol per row."""
    import torch

    encoding = isinstance(side, _EncodeSide)
    assignments = assign_slots([d.n_predictions for d in docs], batch_size)
    by_slot: dict[int, list[Assignment]] = {}
    for a in assignments:
        by_slot.setdefault(a.slot, []).append(a)
    cursor = {slot: 0 for slot in by_slot}  # index of the slot's current assignment
    total = sum(d.n_predictions for d in docs)
    done = 0
    predictor = LockstepPredictor(loaded, side.layout.window)
    rows_docs: list[int] = []  # the document each current row holds
    row_of_slot: dict[int, int] = {}  # slot -> its row at the previous step
    n_steps = max((a.start + docs[a.doc].n_predictions for a in assignments), default=0)
    if stop_after is not None:  # a document without predictions needs no step at all
        n_steps = next((a.start + docs[a.doc].n_predictions for a in assignments if a.doc == stop_after), 0)
    with torch.inference_mode():
        for step in range(n_steps):
            t0 = time.perf_counter()
            new_docs, old_rows, slots, tokens, contexts, us = [], [], [], [], {}, []
            for slot in sorted(by_slot):
                queue = by_slot[slot]
                i = cursor[slot]
                if i < len(queue) and queue[i].start + docs[queue[i].doc].n_predictions <= step:
                    i = cursor[slot] = i + 1
                if i >= len(queue):
                    continue  # this slot has nothing left: its row leaves the batch
                a = queue[i]
                if a.start > step:
                    raise AssertionError("a slot idles while documents wait")  # plan.py guarantees it cannot
                d, u = a.doc, step - a.start
                r = len(new_docs)
                new_docs.append(d)
                slots.append(slot)
                old_rows.append(row_of_slot.get(slot, -1))
                us.append(u)
                if u == 0 and side.layout.first_token == "uniform":
                    side.first(d)
                context = docs[d].restart_context(u)
                if context is not None:
                    contexts[r] = context
                tokens.append(docs[d].stream[u])
            logits = predictor.step(tokens, old_rows, contexts)
            rows_docs = new_docs
            row_of_slot = {slot: r for r, slot in enumerate(slots)}
            _code_rows(side, rows_docs, us, logits, encoding)
            done += len(rows_docs)
            seconds = (time.perf_counter() - t0) / len(rows_docs)
            for d in rows_docs:
                docs[d].seconds += seconds
            if progress is not None:
                progress(done, total)


def _code_rows(side: _EncodeSide | _DecodeSide, rows_docs: list[int], us: list[int], logits: Any,
               encoding: bool) -> None:
    """One symbol per row, in two levels (rows.py): the symbol's block from the block masses, then the symbol
    from its block's probabilities."""
    import torch

    p = probability_rows(logits)  # (R, V)
    block = block_symbols(side.layout.vocab_size)
    masses = block_masses(p, block)  # (R, n_blocks)
    p_np = p.numpy() if p.device.type == "cpu" else p.cpu().numpy()
    masses_np = masses.numpy() if masses.device.type == "cpu" else masses.cpu().numpy()
    docs, family = side.docs, side.family
    if encoding:
        targets = torch.tensor([docs[d].stream[u + 1] for d, u in zip(rows_docs, us, strict=True)],
                               dtype=torch.long, device=p.device)
        bits = ideal_bits(logits, p, targets, masses).cpu().numpy()
        targets_np = targets.cpu().numpy().astype(np.int32)
        blocks_np, inner_np = np.divmod(targets_np, np.int32(block))
        for r, (d, u) in enumerate(zip(rows_docs, us, strict=True)):
            b = int(blocks_np[r])
            encoder = side.encoders[d]
            encoder.encode(blocks_np[r:r + 1], family, masses_np[r:r + 1])
            encoder.encode(inner_np[r:r + 1], family, _inner_row(p_np, masses_np, r, b, block))
            docs[d].bits[u] = bits[r]
    else:
        for r, d in enumerate(rows_docs):
            dec = side.decoders[d]
            if dec is None:
                docs[d].stream.append(PLACEHOLDER_TOKEN)
                continue
            b = int(dec.decode(family, masses_np[r:r + 1])[0])
            s = int(dec.decode(family, _inner_row(p_np, masses_np, r, b, block))[0])
            docs[d].stream.append(b * block + s)


def _inner_row(p_np: np.ndarray, masses_np: np.ndarray, r: int, b: int, block: int) -> np.ndarray:
    """Row r's probabilities within block b, (1, n); all ones where the block's mass is exactly 0 (every entry
    underflowed), which the decoder sees just as the encoder does."""
    inner = p_np[r:r + 1, b * block: (b + 1) * block]
    return inner if masses_np[r, b] > 0 else np.ones_like(inner)


def encode_chunk(loaded: LoadedModel, token_ids: Sequence[Sequence[int]], layout: StreamLayout, batch_size: int,
                 progress: ProgressFn | None = None) -> list[EncodedDoc]:
    """Range-code each document's stream with the model's rows, all documents in lockstep (see plan.py)."""
    docs = []
    for ids in token_ids:
        stream = layout.stream(ids)
        m = layout.n_predictions(len(ids))
        docs.append(_Doc(stream, layout.windows(len(ids)), m, bits=np.zeros(m)))
    side = _EncodeSide(docs, layout)
    for d, ids in enumerate(token_ids):  # documents without predictions: at most a uniform first token
        if docs[d].n_predictions == 0 and layout.uniform_first(len(ids)):
            side.first(d)
    _run(loaded, docs, side, batch_size, progress)
    out = []
    for d, ids in enumerate(token_ids):
        words = side.encoders[d].get_compressed()
        ideal = fsum_bits(docs[d].bits) + side.first_bits[d]
        out.append(EncodedDoc(words.astype("<u4").tobytes(), ideal, layout.n_symbols(len(ids)), docs[d].seconds))
    return out


def decode_chunk(loaded: LoadedModel, n_tokens: Sequence[int], payloads: Sequence[bytes | None],
                 layout: StreamLayout, batch_size: int, progress: ProgressFn | None = None,
                 stop_after: int | None = None) -> tuple[list[list[int]], list[float]]:
    """Each document's decoded stream (prefix included), and its share of the wall time.

    A ``None`` payload (known to be damaged) is not decoded: placeholder tokens keep the batch layout, so the
    other documents decode as they were coded.
    ``stop_after`` = d stops once document d is decoded (the steps after it cannot change its rows)."""
    docs = []
    for n in n_tokens:
        m = layout.n_predictions(n)
        start = [layout.prefix_id] if layout.prefix_id is not None else []
        docs.append(_Doc(start, layout.windows(n), m))
    side = _DecodeSide(docs, payloads, layout)
    for d, n in enumerate(n_tokens):
        if docs[d].n_predictions == 0 and layout.uniform_first(n):
            side.first(d)
    _run(loaded, docs, side, batch_size, progress, stop_after)
    return [d.stream for d in docs], [d.seconds for d in docs]

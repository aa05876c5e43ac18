"""Scoring with a `transformers` causal LM: the only module that runs a model forward for code lengths.

How a document is coded (see windowing.py for the window plan):
  stream = [prefix] + tokens + [eos]   (prefix only under first_token="bos"; eos only under end="eos")
  bits   = [log2|V| for stream[0] under "uniform"] + Σ_windows Σ_scored −log2 p(stream[u+1] | stream[input_start:u+1])
|V| is the model's output dimension (the alphabet the model actually codes over).

Numerics: the backbone runs in the model dtype; the output head is applied only at scored positions, in slices
of at most SLICE_ELEMENTS logits, so no B×T×V tensor is ever held; the log-softmax of each slice uses fp32
exponentials of max-shifted logits and a float64 log (within 3e-7 nats of an all-float64 computation); sums are
exactly rounded (math.fsum), so totals do not depend on batching.
Windows of many documents are batched together, longest first, right-padded with an attention mask (causal
attention makes right padding invisible to real positions).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mdlbench.codelength import fsum_bits, nats_to_bits, uniform_bits
from mdlbench.config import ScoringSettings
from mdlbench.context_curve import document_curve
from mdlbench.corpora import Document
from mdlbench.errors import InputError, ScoringError
from mdlbench.mdl.params import count_parameters
from mdlbench.scoring.base import DocumentCode, ForwardObserver, ScoredPositions, TokenCodes
from mdlbench.scoring.head_kernels import ONEDNN, head_kernel, make_head
from mdlbench.scoring.models import LoadedModel
from mdlbench.scoring.tokens import encode, is_byte_level, roundtrip_ok, token_byte_spans
from mdlbench.windowing import Window, plan_windows

AUTO_BATCH_ACCELERATOR = 64
# CPU auto batch: a small backbone (attention + FFN parameters below CPU_SMALL_BACKBONE_PARAMS) is overhead-bound on
# a CPU and gains from batching windows; a large one is compute-bound there and gains nothing, while padding costs
# memory. benchmarks/bench_throughput.py measures both (results and figures in benchmarks/results/ and the README).
AUTO_BATCH_CPU_SMALL = 8
CPU_SMALL_BACKBONE_PARAMS = 10_000_000
SLICE_ELEMENTS = 1 << 23  # logits per head slice: 32 MiB in fp32, whatever the batch or vocabulary
# Config attributes of architectures whose LM head is more than a linear map of the final hidden state.
HEAD_TRANSFORM_ATTRS = ("final_logit_softcapping", "logit_scale", "logits_scaling", "output_multiplier_scale")


@dataclass
class _Prepared:
    doc_index: int
    doc: Document
    ids: list[int]
    stream: list[int]
    windows: list[Window]
    roundtrip_ok: bool
    spans: list[tuple[int, int]] | None
    bits: list[np.ndarray | None] = field(default_factory=list)  # per window, filled by the forward passes
    window_bytes: list[int] = field(default_factory=list)  # bytes of the tokens each window predicts (progress)


def _window_bytes(windows: list[Window], spans: list[tuple[int, int]] | None, n_prefix: int) -> list[int]:
    """Bytes of the text tokens each window predicts (stream[u + 1] for its scored u; the EOS has none)."""
    if spans is None:
        return [0] * len(windows)
    widths = np.array([0] * n_prefix + [e - s for s, e in spans] + [0], dtype=np.int64)  # per stream position
    cumulative = np.concatenate([[0], np.cumsum(widths)])
    return [int(cumulative[min(w.input_end + 1, len(widths))] - cumulative[w.score_start + 1]) for w in windows]


def resolve_token_id(tokenizer: Any, token: str) -> int:
    token_id = tokenizer.convert_tokens_to_ids(token)
    if token_id is None or (isinstance(token_id, int) and token_id < 0):
        raise InputError(f"token {token!r} is not in the tokenizer's vocabulary")
    return int(token_id)


def auto_batch_size(device_type: str, backbone_params: int) -> int:
    """Windows per forward for ``--batch-size auto``: 64 on an accelerator (halved on out-of-memory); on a CPU 8
    for a small backbone (attention + FFN parameters < CPU_SMALL_BACKBONE_PARAMS), else 1."""
    if device_type != "cpu":
        return AUTO_BATCH_ACCELERATOR
    return AUTO_BATCH_CPU_SMALL if backbone_params < CPU_SMALL_BACKBONE_PARAMS else 1


def _backbone_params(model: Any) -> int:
    counts = count_parameters(model)
    return counts.params_attention + counts.params_ffn


class HFScorer:
    """Implements ``scoring.base.Scorer`` for a loaded transformers causal LM."""

    def __init__(self, loaded: LoadedModel, settings: ScoringSettings) -> None:
        self.loaded = loaded
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.settings = settings
        self.window = settings.window
        self.stride = settings.stride
        self.name = loaded.name
        self.vocab_size = loaded.vocab_size
        self.device = torch.device(loaded.device)
        tok = self.tokenizer
        boundary = resolve_token_id(tok, loaded.boundary_token) if loaded.boundary_token else None
        self.prefix_token_id: int | None = None
        self.eos_token_id: int | None = None
        if settings.first_token == "bos":
            self.prefix_token_id = boundary if boundary is not None else (
                tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)
            if self.prefix_token_id is None:
                raise InputError(f"model {loaded.spec!r}: the tokenizer has no BOS or EOS token to condition the "
                                 "first token on; use --first-token uniform")
        if settings.end == "eos":
            self.eos_token_id = boundary if boundary is not None else tok.eos_token_id
            if self.eos_token_id is None:
                raise InputError(f"model {loaded.spec!r}: the tokenizer has no EOS token; use --end none")
        self.pad_token_id = 0
        # batch_size None = auto (auto_batch_size); an accelerator halves on out-of-memory (_scored_bits_fitting).
        self.batch_size = settings.batch_size or auto_batch_size(self.device.type, _backbone_params(self.model))
        self._use_sliced_head = not any(getattr(self.model.config, a, None) not in (None, 1, 1.0)
                                        for a in HEAD_TRANSFORM_ATTRS)
        self._head_checked = False
        self._byte_level = is_byte_level(self.tokenizer)
        # Called after every forward batch with the number of predictions it scored (live tokens/s on stderr).
        self.on_progress: Callable[[int, int], None] | None = None
        # Sees every scoring forward pass and its coded positions (the lens's FFN activity hooks); None: nobody.
        self.forward_observer: ForwardObserver | None = None

    # -- preparation (background thread) ------------------------------------------------------------------
    def _prepare(self, item: tuple[int, Document]) -> _Prepared:
        doc_index, doc = item
        ids = encode(self.tokenizer, doc.text)
        ok = roundtrip_ok(self.tokenizer, ids, doc.text)
        prefix = [self.prefix_token_id] if self.prefix_token_id is not None else []
        suffix = [self.eos_token_id] if self.eos_token_id is not None else []
        stream = prefix + ids + suffix
        windows = plan_windows(len(stream) - 1, self.window, self.stride)
        spans = token_byte_spans(self.tokenizer, ids, doc.text, self._byte_level)  # context curve bytes, tokens rows
        return _Prepared(doc_index, doc, ids, stream, windows, ok, spans, [None] * len(windows),
                         _window_bytes(windows, spans, len(prefix)))

    # -- the model ------------------------------------------------------------------------------------------
    def _scored_bits(self, batch: list[tuple[_Prepared, int]]) -> list[np.ndarray]:
        """−log2 p for the scored predictions of each (document, window) in the batch, float64."""
        lengths = [p.windows[w].n_input for p, w in batch]
        width = max(lengths)
        input_ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, targets = [], [], []
        for r, (p, w) in enumerate(batch):
            win = p.windows[w]
            input_ids[r, : win.n_input] = torch.tensor(p.stream[win.input_start:win.input_end])
            attention[r, : win.n_input] = 1
            rel = range(win.score_start - win.input_start, win.n_input)
            rows.extend([r] * len(rel))
            cols.extend(rel)
            targets.extend(p.stream[win.score_start + 1: win.input_end + 1])
        input_ids = input_ids.to(self.device)
        # No padding in this batch (one window, or windows of equal length): pass no mask, so attention can take
        # its causal fast path. Same numbers either way (tested).
        attention = None if min(lengths) == width else attention.to(self.device)
        row_t = torch.tensor(rows, device=self.device)
        col_t = torch.tensor(cols, device=self.device)
        target_t = torch.tensor(targets, device=self.device)
        with torch.inference_mode():
            head = self._output_layer() if self._use_sliced_head else None
            if head is not None and not self._head_checked:
                # Before the batch's forward, so that the batch is computed by exactly one forward pass.
                self._check_head(input_ids, head)
            if self.forward_observer is not None:
                self.forward_observer.begin(ScoredPositions(row_t, col_t, tuple(p.doc for p, _ in batch)))
            if self._use_sliced_head:
                hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention,
                                               use_cache=False).last_hidden_state  # (B, T, D) model dtype
                selected = hidden[row_t, col_t]  # (P, D): only the scored positions
            else:
                logits_all = self.model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
                selected = logits_all[row_t, col_t]
                head = None
            bits = torch.empty(len(targets), dtype=torch.float64)
            step = max(1, SLICE_ELEMENTS // self.vocab_size)
            for s in range(0, len(targets), step):
                e = min(s + step, len(targets))
                # (p, V) logits upcast to fp32. The normalizer: exponentials and their sum in fp32 after
                # subtracting the max (a sum of V ones is exact in fp32, so a uniform model costs exactly log2|V|),
                # log and differences in float64: a plain fp32 log_softmax is biased over large vocabularies, an
                # all-float64 one is slower (README, Throughput).
                raw = head(selected[s:e]) if head is not None else selected[s:e]
                logits = raw if raw.dtype == torch.float64 else raw.float()  # a float64 model stays float64
                peak = logits.amax(dim=-1, keepdim=True)
                lse = peak[:, 0].double() + torch.log((logits - peak).exp_().sum(dim=-1).double())
                nats = lse - logits.gather(1, target_t[s:e, None])[:, 0].double()
                if not bool(torch.isfinite(nats).all()):
                    bad = int((~torch.isfinite(nats)).nonzero()[0, 0]) + s
                    p, w = batch[rows[bad]]
                    win = p.windows[w]
                    raise ScoringError(
                        f"model {self.loaded.spec!r} produced non-finite logits on document {p.doc.doc_id!r} "
                        f"(window over stream tokens {win.input_start}..{win.input_end}); nothing was written — "
                        "check the weights and --dtype (float16 overflows on some models; try float32)")
                bits[s:e] = nats_to_bits(nats).cpu()
        if self.forward_observer is not None:
            self.forward_observer.commit()
        out, offset = [], 0
        for p, w in batch:
            n = p.windows[w].n_scored
            out.append(bits[offset: offset + n].numpy())
            offset += n
        return out

    def _scored_bits_fitting(self, batch: list[tuple[_Prepared, int]]) -> list[np.ndarray]:
        """_scored_bits, halving the batch on an accelerator out-of-memory error (and remembering the size that
        fits, for the rest of the run). Per-window results do not depend on the batch they were in."""
        try:
            return self._scored_bits(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                win = batch[0][0].windows[batch[0][1]]
                raise ScoringError(f"out of memory on a single window of {win.n_input} tokens; use a smaller "
                                   "--window or --dtype bfloat16") from None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            half = len(batch) // 2
            self.batch_size = max(1, min(self.batch_size, half))
            return self._scored_bits_fitting(batch[:half]) + self._scored_bits_fitting(batch[half:])

    def _output_layer(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The output layer for one batch: a float32 ``nn.Linear`` on a CPU through oneDNN (about twice MKL's rate
        on a small model's head; README, Throughput), its weight converted for this batch only, because the lens
        changes weights in place between its passes; any other layer as it is."""
        layer = self.model.get_output_embeddings()
        if isinstance(layer, torch.nn.Linear) and head_kernel(self.device.type, layer.weight.dtype) == ONEDNN:
            bias = None if layer.bias is None else layer.bias.detach()
            return make_head(ONEDNN, layer.weight.detach(), bias).apply
        return layer

    def _check_head(self, input_ids: torch.Tensor, head: Any) -> None:
        """Once per run, on a probe of at most 16 tokens: the output head applied to the backbone's last hidden
        state must reproduce the model's own logits (some architectures scale or soft-cap them in forward);
        otherwise fall back to the model's full forward. The probe keeps the check's logits tiny."""
        self._head_checked = True
        probe = input_ids[:1, :16]
        full = self.model(input_ids=probe, use_cache=False).logits[0].float()
        mine = head(self.model.base_model(input_ids=probe, use_cache=False).last_hidden_state[0]).float()
        if not torch.allclose(mine, full, rtol=1e-4, atol=1e-4):
            self._use_sliced_head = False

    def _run_pool(self, pool: list[_Prepared]) -> Iterator[DocumentCode]:
        work = [(p, w) for p in pool for w in range(len(p.windows))]
        work.sort(key=lambda pw: -pw[0].windows[pw[1]].n_input)  # longest first: padding stays within a batch
        start = 0
        while start < len(work):
            batch = work[start: start + self.batch_size]
            for (p, w), bits in zip(batch, self._scored_bits_fitting(batch), strict=True):
                p.bits[w] = bits
            start += len(batch)
            if self.on_progress is not None:
                self.on_progress(sum(p.windows[w].n_scored for p, w in batch),
                                 sum(p.window_bytes[w] for p, w in batch))
        for p in pool:
            yield self._finish(p)

    def _finish(self, p: _Prepared) -> DocumentCode:
        per_prediction = np.concatenate([b for b in p.bits if b is not None]) if p.windows else np.zeros(0)
        uniform_first = self.settings.first_token == "uniform" and len(p.stream) > 0
        first_bits = uniform_bits(self.vocab_size) if uniform_first else 0.0
        total = fsum_bits(per_prediction) + first_bits
        n = len(p.ids)
        # Costs of individual symbols, in stream order (token 0 .. n-1, then EOS).
        symbol_bits = np.concatenate([[first_bits], per_prediction]) if uniform_first else per_prediction
        first_token_bits = float(symbol_bits[0]) if n > 0 else 0.0
        end_bits = float(symbol_bits[-1]) if self.eos_token_id is not None else 0.0
        tokens = self._token_rows(p, symbol_bits, uniform_first)
        curve = document_curve(tokens.context_tokens, tokens.code_length_bits, tokens.byte_start, tokens.byte_end)
        n_forward = sum(w.n_input for w in p.windows)
        return DocumentCode(p.doc_index, p.doc, n, total, first_token_bits, end_bits, p.roundtrip_ok, n_forward,
                            tokens if self.settings.per_token else None, curve)

    def _token_rows(self, p: _Prepared, symbol_bits: np.ndarray, uniform_first: bool) -> TokenCodes:
        """Per-symbol rows: ids, byte spans, context lengths and bits (the tokens table, and the context curve)."""
        n = len(p.ids)
        n_symbols = n + (1 if self.eos_token_id is not None else 0)
        context = np.zeros(n_symbols, dtype=np.int64)
        offset = 1 if uniform_first else 0  # symbol index of the first model prediction
        for win in p.windows:
            u = np.arange(win.score_start, win.input_end)
            context[u + offset] = u - win.input_start + 1
        n_bytes = p.doc.n_bytes
        if p.spans is not None:
            starts = np.fromiter((s for s, _ in p.spans), dtype=np.int64, count=n)
            ends = np.fromiter((e for _, e in p.spans), dtype=np.int64, count=n)
            eos = np.full(n_symbols - n, n_bytes, dtype=np.int64)  # EOS: the empty span at the end
            starts, ends = np.concatenate([starts, eos]), np.concatenate([ends, eos])
        else:
            starts = ends = np.full(n_symbols, -1, dtype=np.int64)
        ids = np.asarray(p.ids + ([self.eos_token_id] if self.eos_token_id is not None else []), dtype=np.int64)
        return TokenCodes(np.arange(n_symbols, dtype=np.int64), ids, starts, ends, context,
                          np.asarray(symbol_bits, dtype=np.float64))

    def prepare(self, docs: Iterable[tuple[int, Document]]) -> list[_Prepared]:
        """Tokenize, check round trips and plan windows (CPU only; safe to run in a background thread while the
        model works on the previous chunk — tokenizers and torch both release the GIL)."""
        return [self._prepare(d) for d in docs]

    def run(self, pool: list[_Prepared]) -> Iterator[DocumentCode]:
        """Code prepared documents as one pool: all their windows are length-sorted and batched together.

        The pool is exactly the documents passed in, so the batches — and therefore the float results — depend
        only on this set of documents and the batch size. The pipeline passes fixed chunks of documents, which is
        what makes a resumed or sharded run reproduce an uninterrupted one bit for bit.
        """
        yield from self._run_pool(pool)

    def score(self, docs: Iterable[tuple[int, Document]]) -> Iterator[DocumentCode]:
        return self.run(self.prepare(docs))

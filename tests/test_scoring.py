"""The HF scorer against hand-derived numbers and an independent float64 reference forward."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from conftest import GPT2_VOCAB, TEXTS

from mdlbench.codelength import LN2
from mdlbench.config import RunOptions, ScoringSettings, resolve_windowing
from mdlbench.corpora import Document
from mdlbench.run.chunks import score_corpus
from mdlbench.scoring.hf import HFScorer
from mdlbench.scoring.models import load_model
from mdlbench.scoring.tokens import encode, token_byte_spans
from mdlbench.scoring.uniform import UniformBytesScorer

LOG2V = math.log2(GPT2_VOCAB)


def _scorer(loaded, window=16, stride=8, first_token="bos", end="eos", batch_size=4, per_token=False):
    return HFScorer(loaded, ScoringSettings(window, stride, first_token, end, batch_size, per_token))


def _docs(texts=TEXTS):
    return [(i, Document(f"d{i}", t)) for i, t in enumerate(texts)]


def _context_start(u: int, n_predictions: int, window: int, stride: int) -> int:
    """Independent of windowing.py: which input position the prediction at u starts reading from."""
    if n_predictions <= window or u < window:
        return 0
    k = math.ceil((u + 1 - window) / stride)  # index of the later window that owns u
    end = min(window + k * stride, n_predictions)
    return end - window


def _reference_bits(model, stream: list[int], window: int, stride: int, uniform_first: bool) -> float:
    """float64 reference: one forward per prediction over exactly its context, −log2 softmax in float64."""
    m = len(stream) - 1
    total = [LOG2V] if uniform_first and stream else []
    with torch.inference_mode():
        for u in range(m):
            start = _context_start(u, m, window, stride)
            logits = model(input_ids=torch.tensor([stream[start:u + 1]])).logits[0, -1].double()
            total.append(float(-torch.log_softmax(logits, -1)[stream[u + 1]]) / LN2)
    return math.fsum(total)


def test_zero_logit_model_costs_exactly_log2_v_per_symbol(zero_model_dir):
    loaded = load_model(str(zero_model_dir), device="cpu")
    for first, end in (("bos", "eos"), ("uniform", "eos"), ("bos", "none"), ("uniform", "none")):
        codes = list(_scorer(loaded, first_token=first, end=end).score(_docs()))
        for c in codes:
            n_symbols = c.n_tokens + (end == "eos")
            assert abs(c.code_length_bits - n_symbols * LOG2V) <= 1e-9 * max(1.0, n_symbols * LOG2V)
            if first == "uniform" and c.n_tokens:
                assert c.first_token_bits == LOG2V


def test_the_head_follows_weights_changed_in_place_between_batches(tmp_path):
    """On a CPU the float32 head runs through oneDNN on a converted copy of its weight, made per batch: after the
    weight is zeroed in place (as the lens changes weights between its passes), the same scorer scores every
    symbol at exactly log2|V| bits; before, its bits agree with the layer's own (MKL) product to 1e-9."""
    from conftest import build_tiny_gpt2

    import mdlbench.scoring.hf as hf

    loaded = load_model(str(build_tiny_gpt2(tmp_path / "m")), device="cpu")
    scorer = _scorer(loaded)
    onednn = [c.code_length_bits for c in scorer.score(_docs())]
    choose = hf.head_kernel
    hf.head_kernel = lambda *_: "mm"  # the layer itself
    try:
        layer = [c.code_length_bits for c in _scorer(loaded).score(_docs())]
    finally:
        hf.head_kernel = choose
    assert all(abs(a - b) <= 1e-9 * b for a, b in zip(onednn, layer, strict=True))
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight.zero_()  # tied: the input embeddings are zero too
    for c in scorer.score(_docs()):
        n_symbols = c.n_tokens + 1  # + EOS
        assert abs(c.code_length_bits - n_symbols * LOG2V) <= 1e-9 * max(1.0, n_symbols * LOG2V)


def test_uniform_bytes_is_exactly_eight_bits_per_byte():
    codes = list(UniformBytesScorer().score(_docs()))
    assert sum(c.code_length_bits for c in codes) == 8.0 * sum(len(t.encode()) for t in TEXTS)
    assert all(c.code_length_bits == 8.0 * c.doc.n_bytes for c in codes)


@pytest.mark.parametrize("window,stride", [(8, 8), (8, 3), (16, 16), (64, 16), (8, 1)])
@pytest.mark.parametrize("first", ["bos", "uniform"])
def test_matches_independent_float64_reference(tiny_loaded, window, stride, first):
    texts = [TEXTS[0], TEXTS[3], TEXTS[4][:120], "", "x"]  # shorter and longer than the window
    codes = list(_scorer(tiny_loaded, window, stride, first, "eos").score(_docs(texts)))
    for c in codes:
        ids = encode(tiny_loaded.tokenizer, c.doc.text)
        stream = ([50256] if first == "bos" else []) + ids + [50256]
        ref = _reference_bits(tiny_loaded.model, stream, window, stride, first == "uniform")
        assert c.code_length_bits == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_stride_equal_window_is_disjoint_and_big_window_is_full_context(tiny_loaded):
    text = TEXTS[4][:110]
    stream = [50256, *encode(tiny_loaded.tokenizer, text), 50256]
    assert 20 < len(stream) <= 64
    (full,) = _scorer(tiny_loaded, 64, 7).score(_docs([text]))
    with torch.inference_mode():
        logp = torch.log_softmax(tiny_loaded.model(input_ids=torch.tensor([stream])).logits[0].double(), -1)
    single_pass = math.fsum(float(-logp[t - 1, stream[t]]) / LN2 for t in range(1, len(stream)))
    assert full.code_length_bits == pytest.approx(single_pass, rel=1e-6)
    for stride in (1, 5, 64):  # window >= document: every stride is the same single pass
        (c,) = _scorer(tiny_loaded, 64, stride).score(_docs([text]))
        assert c.code_length_bits == pytest.approx(full.code_length_bits, rel=1e-9)
    # S = W: disjoint prediction windows, each fed its W inputs — computed by hand here
    (disjoint,) = _scorer(tiny_loaded, 10, 10).score(_docs([text]))
    m = len(stream) - 1
    parts = []
    with torch.inference_mode():
        for start in range(0, m, 10):
            end = min(start + 10, m)
            lo = end - 10 if start > 0 else 0
            lp = torch.log_softmax(tiny_loaded.model(input_ids=torch.tensor([stream[lo:end]])).logits[0].double(), -1)
            parts += [float(-lp[u - lo, stream[u + 1]]) / LN2 for u in range(start, end)]
    assert disjoint.code_length_bits == pytest.approx(math.fsum(parts), rel=1e-6)
    assert disjoint.code_length_bits != pytest.approx(full.code_length_bits, rel=1e-6)


def test_batch_size_padding_and_order_do_not_change_bits(tiny_loaded):
    docs = _docs()
    reference = {c.doc.doc_id: c.code_length_bits for c in _scorer(tiny_loaded, batch_size=1).score(docs)}
    for bs in (3, 8):
        shuffled = docs[:]
        random.Random(bs).shuffle(shuffled)
        got = {c.doc.doc_id: c.code_length_bits for c in _scorer(tiny_loaded, batch_size=bs).score(shuffled)}
        assert got.keys() == reference.keys()
        for k in reference:
            assert got[k] == pytest.approx(reference[k], rel=1e-6, abs=1e-9)


def test_float64_model_is_bitwise_batch_invariant(tiny_model_dir):
    loaded = load_model(str(tiny_model_dir), device="cpu")
    loaded.model.double()
    a = {c.doc.doc_id: c.code_length_bits for c in _scorer(loaded, batch_size=1).score(_docs())}
    b = {c.doc.doc_id: c.code_length_bits for c in _scorer(loaded, batch_size=8).score(_docs()[::-1])}
    assert max(abs(a[k] - b[k]) / max(1.0, a[k]) for k in a) < 1e-12


def test_per_token_rows_sum_to_document_and_spans_tile_bytes(tiny_loaded):
    for first in ("bos", "uniform"):
        for c in _scorer(tiny_loaded, 8, 3, first, "eos", per_token=True).score(_docs()):
            t = c.tokens
            assert len(t.token_index) == c.n_tokens + 1  # every text token and the EOS, each exactly once
            assert math.fsum(t.code_length_bits.tolist()) == pytest.approx(c.code_length_bits, rel=1e-12)
            n_bytes = c.doc.n_bytes
            assert t.byte_start[0] == 0  # the first span starts the document (the EOS span of an empty one too)
            assert np.all(t.byte_start[1:] == t.byte_end[:-1])  # contiguous, no gaps or overlaps
            assert t.byte_end[-1] == n_bytes
            assert c.end_bits == t.code_length_bits[-1]
            if first == "uniform" and c.n_tokens:
                assert t.context_tokens[0] == 0 and t.code_length_bits[0] == LOG2V
            assert np.all(t.context_tokens[1:] >= 1)


def test_multibyte_denominators_and_literal_special_tokens(tiny_loaded):
    text = TEXTS[3]
    ids = encode(tiny_loaded.tokenizer, text)
    assert 50256 not in ids  # "<|endoftext|>" inside a document is text, not the control token
    spans = token_byte_spans(tiny_loaded.tokenizer, ids, text)
    assert spans is not None and spans[-1][1] == len(text.encode())
    # Bytes are UTF-8 bytes, chars are code points, counted by hand: "café" is c, a, f (1 byte each) + é (2);
    # the space 1; "😀" 4 bytes. 10 bytes, 6 code points.
    (code,) = _scorer(tiny_loaded).score(_docs(["café 😀"]))
    assert (code.doc.n_bytes, code.doc.n_chars) == (10, 6)


def test_lossy_tokenizer_is_flagged(tiny_model_dir):
    """A lower-casing normalizer makes decode(encode(s)) != s: flagged per document, never silent."""
    from tokenizers import normalizers

    loaded = load_model(str(tiny_model_dir), device="cpu")
    loaded.tokenizer.backend_tokenizer.normalizer = normalizers.Lowercase()
    codes = {c.doc.doc_id: c for c in _scorer(loaded).score(_docs(["Hello World", "lower case only"]))}
    assert not codes["d0"].tokenizer_roundtrip_ok
    assert codes["d1"].tokenizer_roundtrip_ok


def test_nan_logits_stop_with_error_naming_document(tiny_model_dir):
    from mdlbench.errors import ScoringError

    loaded = load_model(str(tiny_model_dir), device="cpu")
    with torch.no_grad():
        loaded.model.transformer.ln_f.weight.fill_(float("nan"))
    with pytest.raises(ScoringError, match="'d0'"):
        list(_scorer(loaded).score(_docs(["some text here"])))


def test_window_and_stride_validation(tiny_loaded):
    from mdlbench.errors import InputError

    with pytest.raises(InputError, match="exceeds the model's context of 64"):
        resolve_windowing(RunOptions(window=128), 64)
    with pytest.raises(InputError, match="--stride 9 must be between 1 and --window 8"):
        resolve_windowing(RunOptions(window=8, stride=9), 64)
    settings = resolve_windowing(RunOptions(protocol="lm-eval"), 64)
    assert (settings.window, settings.stride, settings.first_token, settings.end) == (64, 64, "bos", "none")
    with pytest.raises(InputError, match="lm-eval fixes --end none"):
        resolve_windowing(RunOptions(protocol="lm-eval", end="eos"), 64)
    settings = resolve_windowing(RunOptions(), 4096)
    assert (settings.window, settings.stride, settings.batch_size) == (2048, 1024, None)
    for bad in ({"window": 0}, {"stride": -1}, {"batch_size": 0}, {"bootstrap_samples": -5}, {"max_docs": 0}):
        with pytest.raises(InputError, match=f"--{next(iter(bad)).replace('_', '-')} "):
            RunOptions(**bad)  # zero is never silently "the default"


def test_score_corpus_codes_every_document_once(tiny_loaded, jsonl_corpus):
    from mdlbench.corpora import open_corpus

    corpus = open_corpus(str(jsonl_corpus), id_field="id")
    codes, sha = score_corpus(_scorer(tiny_loaded, batch_size=3), corpus)
    assert [c.doc.doc_id for c in codes] == [f"d{i}" for i in range(len(TEXTS))]
    assert sha == corpus.sha256()


def test_out_of_memory_halves_the_batch_and_keeps_the_numbers(tiny_loaded, monkeypatch):
    """The accelerator path: an OOM on a big batch splits it; per-document bits are unchanged (tested on CPU by
    raising torch's OutOfMemoryError for batches above 2 windows)."""
    reference = {c.doc.doc_id: c.code_length_bits for c in _scorer(tiny_loaded, 8, 4, batch_size=1).score(_docs())}
    scorer = _scorer(tiny_loaded, 8, 4, batch_size=8)
    real = scorer._scored_bits
    tried, fitted = [], []

    def fragile(batch):
        tried.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("simulated")
        fitted.append(len(batch))
        return real(batch)

    monkeypatch.setattr(scorer, "_scored_bits", fragile)
    got = {c.doc.doc_id: c.code_length_bits for c in scorer.score(_docs())}
    assert tried[:3] == [8, 4, 2] and max(fitted) == 2 and scorer.batch_size == 2
    assert tried.count(8) == 1  # once halved, later batches start at the size that fits
    for k, v in reference.items():
        assert got[k] == pytest.approx(v, rel=1e-6, abs=1e-9)


def test_model_whose_forward_transforms_logits_falls_back_to_its_own_logits(tiny_model_dir):
    """The sliced output head is only used when it reproduces the model's logits; a model that scales its logits
    in forward (like Gemma's soft-capping) is scored from its own forward instead."""
    loaded = load_model(str(tiny_model_dir), device="cpu")
    original = loaded.model.forward

    def scaled(*args, **kwargs):
        out = original(*args, **kwargs)
        out.logits = out.logits * 3.0
        return out

    loaded.model.forward = scaled
    scorer = _scorer(loaded, 64, 32)
    (code,) = scorer.score(_docs([TEXTS[0]]))
    assert not scorer._use_sliced_head
    stream = [50256, *encode(loaded.tokenizer, TEXTS[0]), 50256]
    with torch.inference_mode():
        logp = torch.log_softmax(loaded.model(input_ids=torch.tensor([stream])).logits[0].double(), -1)
    expected = math.fsum(float(-logp[t - 1, stream[t]]) / LN2 for t in range(1, len(stream)))
    assert code.code_length_bits == pytest.approx(expected, rel=1e-6)


def test_auto_batch_size_by_device_and_backbone_size(tiny_loaded):
    from mdlbench.scoring.hf import CPU_SMALL_BACKBONE_PARAMS, auto_batch_size

    assert auto_batch_size("cpu", CPU_SMALL_BACKBONE_PARAMS - 1) == 8  # overhead-bound: batch windows
    assert auto_batch_size("cpu", CPU_SMALL_BACKBONE_PARAMS) == 1  # compute-bound: no padding masks
    assert auto_batch_size("cuda", 10**9) == 64  # halved on out-of-memory
    # The tiny test GPT-2 (2 layers, width 32) is small: auto gives 8 windows per forward on this CPU.
    assert _scorer(tiny_loaded, batch_size=None).batch_size == 8

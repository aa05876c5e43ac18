"""A lockstep step's rows: the output layer's kernels (scoring/head_kernels.py, coding/head.py) and the
probabilities, ideal bits and block masses built from the logits (coding/rows.py): agreement with the model,
independence from the batch's other rows, exact values where they can be derived by hand, refusal of non-finite
logits, and the two-level code's length."""

from __future__ import annotations

import math

import pytest
import torch

from mdlbench.coding.head import plain_head
from mdlbench.coding.rows import TINY_PROBABILITY, block_masses, block_symbols, ideal_bits, probability_rows
from mdlbench.errors import ScoringError
from mdlbench.scoring.head_kernels import MM, ONEDNN, head_kernel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _hidden(loaded, n_rows: int, seed: int) -> torch.Tensor:
    ids = torch.randint(0, 1000, (n_rows, 5), generator=torch.Generator().manual_seed(seed))
    with torch.inference_mode():
        return loaded.model.base_model(input_ids=ids, use_cache=False).last_hidden_state[:, -1, :]


def test_the_cpu_float32_kernel_is_onednn_where_torch_has_it():
    """Where the choice is oneDNN, its operator runs with a weight converted to oneDNN's layout and gives the
    matrix product; other dtypes and devices get torch.mm."""
    if head_kernel("cpu", torch.float32) == ONEDNN:
        weight, hidden = torch.randn(7, 5, dtype=torch.float64), torch.randn(3, 5, dtype=torch.float64)
        got = torch.ops.mkldnn._linear_pointwise(hidden.float(), weight.float().to_mkldnn(), None, "none", [], "")
        assert torch.allclose(got.double(), hidden @ weight.t(), rtol=0, atol=1e-5)
    else:
        assert not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_linear_pointwise")
    assert head_kernel("cpu", torch.bfloat16) == MM
    assert head_kernel("cuda", torch.float32) == MM


@pytest.mark.parametrize("kernel", [ONEDNN, MM])
def test_each_kernel_gives_the_models_logits_and_rows_do_not_see_each_other(tiny_loaded, kernel):
    if kernel == ONEDNN and head_kernel("cpu", torch.float32) != ONEDNN:
        pytest.skip("this torch has no oneDNN linear operator")
    head = plain_head(tiny_loaded.model, "cpu", kernel=kernel)
    assert head is not None and head.kernel == kernel
    hidden = _hidden(tiny_loaded, 7, seed=0)
    layer = tiny_loaded.model.get_output_embeddings()
    with torch.inference_mode():
        reference = hidden.double() @ layer.weight.double().t()
        logits = head.apply(hidden)
        assert logits.shape == (7, layer.weight.shape[0])
        assert torch.allclose(logits.double(), reference, rtol=0, atol=1e-4)
        # the same first rows among other rows, and alone: bit-identical (what lets a damaged document be skipped)
        others = torch.cat([hidden[:3], _hidden(tiny_loaded, 4, seed=1)])
        assert torch.equal(head.apply(others)[:3], logits[:3])


def test_a_model_whose_logits_are_more_than_its_output_layer_keeps_its_forward(tiny_loaded, monkeypatch):
    monkeypatch.setattr(tiny_loaded.model.config, "final_logit_softcapping", 30.0, raising=False)
    assert plain_head(tiny_loaded.model, "cpu") is None


def test_probability_rows_sum_to_one_and_follow_the_logits():
    logits = torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]], dtype=torch.float32)
    p = probability_rows(logits)
    assert p.dtype == torch.float32
    assert torch.allclose(p, torch.tensor([[0.25, 0.75], [0.5, 0.5]]), rtol=0, atol=1e-7)
    assert torch.equal(logits, torch.tensor([[0.0, math.log(3.0)], [5.0, 5.0]], dtype=torch.float32))  # untouched


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_logits_are_refused(bad):
    logits = torch.zeros((3, 5))
    if bad == -float("inf"):
        logits[1, :] = bad  # a row without any finite logit
    else:
        logits[1, 3] = bad
    with pytest.raises(ScoringError, match="non-finite logits .batch row 1."):
        probability_rows(logits)


def test_a_single_minus_infinity_logit_is_a_zero_probability_not_an_error():
    logits = torch.tensor([[0.0, -float("inf"), 0.0]])
    assert torch.equal(probability_rows(logits), torch.tensor([[0.5, 0.0, 0.5]]))


def test_ideal_bits_by_hand_including_a_probability_float32_cannot_hold():
    # row 0: p = (1/4, 3/4), target 1: log2(4/3) bits. row 1: target 200 nats below the rest, p underflows to 0 in
    # float32; its bits are (200 + log(1 + e^-200)) / ln 2 = 200 / ln 2 in float64.
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, -200.0]], dtype=torch.float32)
    p = probability_rows(logits)
    assert float(p[1, 1]) < TINY_PROBABILITY
    bits = ideal_bits(logits, p, torch.tensor([1, 1]), block_masses(p, block_symbols(2)))
    assert bits.dtype == torch.float64
    assert math.isclose(float(bits[0]), math.log2(4 / 3), rel_tol=1e-6)
    assert math.isclose(float(bits[1]), 200 / math.log(2), rel_tol=1e-15)


def test_ideal_bits_are_normalized_by_the_float64_sum_of_the_rows():
    """torch's float32 softmax rows over a large vocabulary sum to 1 + a few 1e-6 (here 3.8e-6 on average), which
    would make every −log2 p[t] a little low; normalized by the float64 sum of the block masses, the bits of 64
    rows (half of them at the row's most likely token, where the bias weighs most) equal a float64 log-softmax's to
    within 5e-8 relative (measured 5e-9; without the normalization -3.8e-7)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(64, 49_152, generator=g) * 4.0
    targets = torch.randint(0, 49_152, (64,), generator=g)
    targets = torch.where(torch.arange(64) % 2 == 0, logits.argmax(1), targets)
    reference = -torch.log_softmax(logits.double(), -1).gather(1, targets[:, None]).sum() / math.log(2)
    p = probability_rows(logits)
    bits = ideal_bits(logits, p, targets, block_masses(p, block_symbols(49_152))).sum()
    assert abs(float(bits - reference)) < 5e-8 * float(reference)


@pytest.mark.parametrize(("vocab", "block"), [(1, 1), (2, 2), (4, 2), (5, 3), (50_257, 225), (49_152, 222)])
def test_block_symbols_is_the_ceiling_of_the_square_root(vocab, block):
    assert block_symbols(vocab) == block
    assert (block - 1) ** 2 < vocab <= block ** 2


def test_block_masses_by_hand_with_a_short_last_block():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.15, 0.25], [1.0, 0.0, 0.0, 0.0, 0.0]])
    masses = block_masses(p, block_symbols(5))  # blocks {0,1,2}, {3,4}
    assert torch.allclose(masses, torch.tensor([[0.6, 0.4], [1.0, 0.0]]), rtol=0, atol=1e-7)


def test_the_two_level_code_costs_what_one_level_would(tiny_loaded):
    """Coding a symbol as (block, place in block) spends −log2 p[t] bits up to the coder's quantization: a range
    coder over many symbols spends within a few bits of Σ −log2 p (its flush), which we check on 400 symbols drawn
    from real rows; a decoder given the same rows gets the symbols back."""
    import constriction
    import numpy as np

    rng = np.random.default_rng(0)
    with torch.inference_mode():
        logits = tiny_loaded.model.get_output_embeddings()(_hidden(tiny_loaded, 8, seed=2))
    p = probability_rows(logits)
    block = block_symbols(p.shape[1])
    masses = block_masses(p, block).numpy()
    p_np = p.numpy()
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    weights = p_np.astype(np.float64)
    weights /= weights.sum(axis=1, keepdims=True)
    symbols = [(r, int(rng.choice(p.shape[1], p=weights[r]))) for r in rng.integers(0, 8, 400)]
    for r, t in symbols:
        b, s = divmod(t, block)
        encoder.encode(np.array([b], np.int32), family, masses[r:r + 1])
        encoder.encode(np.array([s], np.int32), family, p_np[r:r + 1, b * block:(b + 1) * block])
    masses_t = block_masses(p, block)
    ideal = sum(float(ideal_bits(logits[r:r + 1], p[r:r + 1], torch.tensor([t]), masses_t[r:r + 1])[0])
                for r, t in symbols)
    coded = 32 * len(encoder.get_compressed())
    assert 0.99 * ideal < coded <= ideal + 64 + 1e-3 * ideal
    decoder = constriction.stream.queue.RangeDecoder(encoder.get_compressed())
    for r, t in symbols:
        b = int(decoder.decode(family, masses[r:r + 1])[0])
        assert b * block + int(decoder.decode(family, p_np[r:r + 1, b * block:(b + 1) * block])[0]) == t

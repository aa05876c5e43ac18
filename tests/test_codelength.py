"""Pure arithmetic: rates are ratios of sums, the bootstrap behaves, float64 sums are exact."""

from __future__ import annotations

import math

import numpy as np

from mdlbench.codelength import (
    bits_per_byte,
    bits_per_char,
    bootstrap_ratio_ci,
    fsum_bits,
    nats_to_bits,
    paired_bootstrap_diff_ci,
    rate,
    uniform_bits,
)


def test_hand_numbers():
    assert nats_to_bits(math.log(2) * 3) == 3.0
    assert uniform_bits(50257) == math.log2(50257)
    assert abs(uniform_bits(50257) - 15.617) < 1e-3
    assert bits_per_byte(24.0, 3) == 8.0
    assert math.isnan(rate(0.0, 0))  # an empty corpus is NaN, not a ZeroDivisionError


def test_sum_then_divide_not_mean_of_ratios():
    bits, n_bytes = [10.0, 1000.0], [10, 100]
    assert bits_per_byte(sum(bits), sum(n_bytes)) == 1010 / 110
    assert bits_per_byte(sum(bits), sum(n_bytes)) != np.mean([b / n for b, n in zip(bits, n_bytes, strict=False)])


def test_fsum_matches_exact_reference_on_1e7_float32_costs():
    rng = np.random.default_rng(0)
    costs = rng.exponential(3.0, size=10_000_000).astype(np.float32)
    assert abs(fsum_bits(costs) - math.fsum(costs.astype(np.float64).tolist())) <= 1e-12 * fsum_bits(costs)


def test_bootstrap_ci_contains_point_and_is_seeded():
    rng = np.random.default_rng(1)
    n_bytes = rng.integers(100, 2000, size=50)
    bits = n_bytes * (1.5 + rng.normal(0, 0.2, size=50))
    point = bits.sum() / n_bytes.sum()
    low, high = bootstrap_ratio_ci(bits, n_bytes, n_samples=2000, seed=3)
    assert low < point < high
    assert (low, high) == bootstrap_ratio_ci(bits, n_bytes, n_samples=2000, seed=3)
    assert all(math.isnan(v) for v in bootstrap_ratio_ci([1.0], [1], n_samples=100))


def test_bpb_bpc_identity_on_multibyte_text():
    text = "naïve café 你好 😀"
    bits = 123.456
    n_bytes, n_chars = len(text.encode()), len(text)
    assert n_bytes != n_chars
    assert math.isclose(bits_per_byte(bits, n_bytes) * n_bytes, bits, rel_tol=1e-15)
    assert math.isclose(bits_per_char(bits, n_chars) * n_chars, bits, rel_tol=1e-15)


def test_paired_bootstrap_of_model_against_itself_is_exactly_zero():
    bits = [10.0, 20.0, 35.5]
    point, low, high = paired_bootstrap_diff_ci(bits, bits, [5, 9, 12], n_samples=500)
    assert (point, low, high) == (0.0, 0.0, 0.0)


def test_document_bootstrap_covers_true_rate():
    """METHODS §7/§8.20: with per-document random effects, the 95% document-bootstrap CI covers μ ~95% of the time."""
    rng = np.random.default_rng(7)
    mu, covered, sims = 1.2, 0, 200
    for _ in range(sims):
        n = rng.integers(200, 3000, size=40)
        b = n * (mu + rng.normal(0, 0.15, size=40))
        low, high = bootstrap_ratio_ci(b, n, n_samples=1000, seed=int(rng.integers(1 << 30)))
        covered += low <= mu <= high
    assert 0.88 <= covered / sims <= 0.99


def test_progress_eta_counts_down_between_chunk_updates():
    import io

    from mdlbench.progress import Progress, eta_seconds

    # 25 of 100 bytes after 10 s: 30 s left at that rate; 4 s later (no new bytes) 26 s, not 10 * 14/10 * 3.
    assert eta_seconds(25, 100, 10.0, 0.0) == 30.0
    assert eta_seconds(25, 100, 10.0, 4.0) == 26.0
    assert eta_seconds(25, 100, 10.0, 40.0) == 0.0  # overdue: never negative
    assert eta_seconds(0, 100, 0.0, 5.0) == float("inf")
    out = io.StringIO()
    progress = Progress("run", total_bytes=100, stream=out)
    progress.update(1, 50, 10)
    assert "50/100 B," in out.getvalue() and "ETA" in out.getvalue()
    big = Progress("run", total_bytes=2_500_000, stream=io.StringIO())
    big.update(1, 1_250_000, 10)
    assert "1.25/2.50 MB," in big.line()  # the unit follows the total
    # A label longer than the console is cut in the middle; the counts stay whole and the line fits 120 columns.
    label = "m" * 70 + "-step-1000 × " + "c" * 70
    long = Progress(label, total_docs=3, total_bytes=2_500_000, stream=io.StringIO())
    long.update(1, 1_250_000, 10)
    line = long.line(final=True)
    assert len(line) == 120 and line.startswith("m" * 20) and "…" in line
    assert line.endswith(": 1/3 docs, 1.25/2.50 MB, 10 tokens, " + line.split(" tokens, ")[1])
    assert line.split(": ", 1)[1].startswith("1/3 docs, 1.25/2.50 MB, 10 tokens, ") and " tok/s, done in " in line
    assert line.split(":")[0].endswith("c" * 20)

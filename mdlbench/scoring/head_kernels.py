"""The output layer as one matrix product, with the fastest kernel this torch build has for the device and dtype.

On a CPU, oneDNN with the weight converted to its own layout (``torch.ops.mkldnn._linear_pointwise``) runs the
(rows, D) × (D, V) product of a small model's output layer about twice as fast as MKL's ``linear``/``mm`` on the
same threads (benchmarks/bench_coding_rows.py; README, Throughput and coding speed); elsewhere, or when that
operator is missing, a row-major (D, V) copy of the weight makes ``torch.mm`` faster than ``linear``'s (V, D).
Callers check the kernel on a probe against the model's own logits (coding/head.py, scoring/hf.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ONEDNN, MM = "onednn", "mm"


@dataclass(frozen=True, slots=True)
class Head:
    kernel: str  # ONEDNN | MM
    apply: Callable[[Any], Any]  # (R, D) hidden states -> (R, V) logits, a fresh tensor


def head_kernel(device_type: str, dtype: Any) -> str:
    """ONEDNN for float32 on a CPU when this torch has the operator, else MM."""
    import torch

    if (device_type == "cpu" and dtype == torch.float32 and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return ONEDNN
    return MM


def make_head(kernel: str, weight: Any, bias: Any) -> Head:
    """weight: the (V, D) output matrix; bias: (V,) or None. The weight is copied into the kernel's layout once,
    so the Head computes with the weight as it was when it was made."""
    import torch

    if kernel == ONEDNN:
        packed = weight.to_mkldnn()
        return Head(ONEDNN, lambda h: torch.ops.mkldnn._linear_pointwise(h.contiguous(), packed, bias, "none", [], ""))
    w_t = weight.t().contiguous()
    if bias is None:
        return Head(MM, lambda h: torch.mm(h, w_t))
    return Head(MM, lambda h: torch.addmm(bias, h, w_t))

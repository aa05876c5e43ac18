"""The output layer of a lockstep step as one matrix product, with the fastest kernel that gives the model's logits.

A step's head is (R, D) hidden states times the (D, V) output matrix, and it is most of a small model's coding
time. On a CPU, oneDNN with the weight converted once to its own layout (``torch.ops.mkldnn._linear_pointwise``)
runs this product faster than MKL's ``torch.mm`` on the same threads (the README's account of the coding speed);
elsewhere, or when that operator is missing from the installed torch, a row-major (D, V) copy of the weight makes
``torch.mm`` faster than ``linear``'s (V, D). Either kernel is checked on a probe against the model's own logits,
and a model whose logits are more than its output layer (a soft cap, a scale) keeps the model's forward.

Which kernel runs follows from the device, the dtype and the torch build, all of which the container records, so
encoder and decoder use the same one; a row does not depend on the other rows of its batch under either kernel
(tests/test_coding_rows.py).
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


def _make(kernel: str, weight: Any, bias: Any) -> Head:
    """weight: the (V, D) output matrix; bias: (V,) or None."""
    import torch

    if kernel == ONEDNN:
        packed = weight.to_mkldnn()
        return Head(ONEDNN, lambda h: torch.ops.mkldnn._linear_pointwise(h.contiguous(), packed, bias, "none", [], ""))
    w_t = weight.t().contiguous()
    if bias is None:
        return Head(MM, lambda h: torch.mm(h, w_t))
    return Head(MM, lambda h: torch.addmm(bias, h, w_t))


def plain_head(model: Any, device: Any, kernel: str | None = None) -> Head | None:
    """The model's output layer as a :class:`Head` when its logits are that layer applied to the backbone's last
    hidden state (checked on a probe, as the scorer does), else None: then the model's own forward is used.
    ``kernel`` None: :func:`head_kernel`'s choice."""
    import torch

    from mdlbench.scoring.hf import HEAD_TRANSFORM_ATTRS

    layer = model.get_output_embeddings()
    if layer is None or any(getattr(model.config, a, None) not in (None, 1, 1.0) for a in HEAD_TRANSFORM_ATTRS):
        return None
    weight = layer.weight.detach()
    bias = getattr(layer, "bias", None)
    bias = bias.detach() if bias is not None else None
    probe = torch.arange(min(16, weight.shape[0]), device=device)[None, :]
    with torch.inference_mode():
        full = model(input_ids=probe, use_cache=False).logits[0].float()
        hidden = model.base_model(input_ids=probe, use_cache=False).last_hidden_state[0]
        for choice in dict.fromkeys([kernel or head_kernel(torch.device(device).type, weight.dtype), MM]):
            head = _make(choice, weight, bias)
            try:
                mine = head.apply(hidden).float()
            except RuntimeError:  # an operator this build or layout does not support: the next kernel
                continue
            if torch.allclose(mine, full, rtol=1e-4, atol=1e-4):
                return head
    return None

"""The output layer of a lockstep step as one matrix product (scoring/head_kernels.py picks the kernel: oneDNN on a
CPU, ``torch.mm`` elsewhere), checked on a probe against the model's own logits; a model whose logits are more
than its output layer (a soft cap, a scale) keeps the model's forward.

Which kernel runs follows from the device, the dtype and the torch build, all of which the container records, so
encoder and decoder use the same one; a row does not depend on the other rows of its batch under either kernel
(tests/test_coding_rows.py).
"""

from __future__ import annotations

from typing import Any

from mdlbench.scoring.head_kernels import MM, Head, head_kernel, make_head


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
            head = make_head(choice, weight, bias)
            try:
                mine = head.apply(hidden).float()
            except RuntimeError:  # an operator this build or layout does not support: the next kernel
                continue
            if torch.allclose(mine, full, rtol=1e-4, atol=1e-4):
                return head
    return None

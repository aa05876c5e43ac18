"""One component at k bits: its ``quantized-<k>`` code, and the model with only that component rounded.

The rounding and the code are exactly ``quantized-<k>``'s (``weights_code.quantize_tensors``: RTN per output
channel, fp16 scale and offset, packed integers and side stream each in one zstd-19 frame), restricted to the
component's tensors. Instead of copying a 100M-parameter model per variant, the rounded tensors are written into
the model in place and the originals restored afterwards, bit for bit (``replaced_parameters``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from mdlbench.lens.components import ComponentGroup
from mdlbench.mdl.weights_code import QuantizedTensor, SubsetCode, quantize_tensors, subset_code


@dataclass(frozen=True)
class QuantizedGroup:
    """A group rounded to ``bits``: the tensors the decoder rebuilds, and the bytes its code compresses."""

    group: ComponentGroup
    bits: int
    restored: dict[str, torch.Tensor]  # name -> rounded tensor (only the tensors that quantized-k rounds)
    pieces: tuple[QuantizedTensor, ...]  # bytes only (restored=None), in model order

    def code(self, zstd_level: int) -> SubsetCode:
        """zstd of the packed integers + zstd of the side stream (slow at level 19: run it beside scoring)."""
        return subset_code(self.pieces, self.bits, n_quantized=self.group.n_quantized,
                           n_exact=self.group.n_params - self.group.n_quantized, zstd_level=zstd_level)


def quantize_group(model: Any, group: ComponentGroup, bits: int, group_size: int | None = None) -> QuantizedGroup:
    """Round only ``group``'s tensors; the model is not modified."""
    restored: dict[str, torch.Tensor] = {}
    pieces = []
    with torch.no_grad():
        for piece in quantize_tensors(model, bits, group.names, group_size=group_size):
            if piece.restored is not None:
                restored[piece.name] = piece.restored
            pieces.append(QuantizedTensor(piece.name, piece.packed, piece.side, None))
    return QuantizedGroup(group, bits, restored, tuple(pieces))


@contextmanager
def replaced_parameters(model: Any, replacements: Mapping[str, torch.Tensor]) -> Iterator[None]:
    """Inside the block the named parameters hold ``replacements``; afterwards exactly their old values.

    Tied parameters are one tensor, so replacing the token embedding also replaces a tied output head.
    """
    originals: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        try:
            for name, value in replacements.items():
                param = model.get_parameter(name)
                originals[name] = param.detach().clone()
                param.copy_(value.to(device=param.device, dtype=param.dtype))
            yield
        finally:
            for name, value in originals.items():
                model.get_parameter(name).copy_(value)

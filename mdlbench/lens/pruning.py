"""Removing FFN neurons for real: a smaller model, ranked by a criterion on documents it is not scored on.

Neuron j of a layer is row j of each input projection and column j of the output projection (``layout``); pruning
replaces those modules by smaller copies holding the kept rows/columns (biases of the input projections too), so
the pruned model has fewer parameters and h has fewer coordinates. Mathematically this equals masking h_j to 0;
numerically the two agree to float rounding (the matmuls sum over fewer terms), which the tests check.

Criteria, each giving an order of removal per layer (first = removed first; ties broken by neuron index):
* ``frequency``: fewest positions where the neuron is active (``activity``) first;
* ``magnitude``: smallest mean |h_j| first;
* ``random``: a seeded permutation (``numpy.random.default_rng([seed, layer])``), the control: it does not look
  at the data, so every fraction removes a superset of the smaller fractions' neurons.
Removing a fraction f of d_ff removes ``round(f · d_ff)`` neurons in every layer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from mdlbench.lens.layout import FfnLayer, FfnLayout

CRITERIA = ("frequency", "magnitude", "random")


def n_to_remove(fraction: float, d_ff: int) -> int:
    """round(fraction · d_ff), halves rounded up. Example: 0.25 of 1536 -> 384; 0.1 of 5 -> 1 (0.5 rounds up)."""
    return int(math.floor(fraction * d_ff + 0.5))


def removal_order(criterion: str, *, active_counts: np.ndarray, abs_h_sum: np.ndarray, seed: int,
                  layer: int) -> np.ndarray:
    """Neuron indices of one layer in the order they are removed (int64, a permutation of range(d_ff))."""
    d_ff = len(active_counts)
    if criterion == "frequency":
        return np.argsort(active_counts, kind="stable").astype(np.int64)
    if criterion == "magnitude":
        return np.argsort(abs_h_sum, kind="stable").astype(np.int64)
    if criterion == "random":
        return np.random.default_rng([seed, layer]).permutation(d_ff).astype(np.int64)
    raise ValueError(f"unknown pruning criterion {criterion!r}; choose from {', '.join(CRITERIA)}")


def kept_neurons(order: np.ndarray, n_remove: int) -> np.ndarray:
    """Sorted indices that survive removing the first ``n_remove`` of ``order``."""
    return np.sort(order[n_remove:])


def neuron_elements(layer: FfnLayer) -> dict[tuple[str, str], int]:
    """Elements of each tensor that go with one neuron, keyed (projection attribute, "weight" | "bias"): a row
    (and bias entry) of each input projection, a column of the output projection (its bias stays)."""
    out: dict[tuple[str, str], int] = {}
    for attr in layer.in_projs:
        module = layer.module(attr)
        out[(attr, "weight")] = int(module.weight.shape[0] if layer.conv1d else module.weight.shape[1])
        if getattr(module, "bias", None) is not None:
            out[(attr, "bias")] = 1
    down = layer.module(layer.out_proj)
    out[(layer.out_proj, "weight")] = int(down.weight.shape[1] if layer.conv1d else down.weight.shape[0])
    return out


def params_per_neuron(layer: FfnLayer) -> int:
    """Parameters that go with one neuron.

    Example: GPT-2 with d_model 32: c_fc column 32 + bias 1 + c_proj row 32 = 65; Llama (no biases): 3 · d_model.
    """
    return sum(neuron_elements(layer).values())


def neuron_storage_bits(layer: FfnLayer, widths: Mapping[tuple[int, str, str], float]) -> float:
    """Stored bits that go with one neuron: Σ elements × the stored width of their tensor
    (``components.ffn_tensor_widths``)."""
    return math.fsum(n * widths[(layer.index, attr, kind)] for (attr, kind), n in neuron_elements(layer).items())


def _smaller(module: Any, keep: torch.Tensor, *, produces_h: bool, conv1d: bool) -> torch.nn.Module:
    """A copy of a projection with only the kept neurons: the rows producing them, or the columns reading them."""
    weight = module.weight.detach()
    bias = module.bias.detach() if getattr(module, "bias", None) is not None else None
    # Linear weight is (out, in); Conv1D weight is (in, out). The neuron axis is the output axis of an input
    # projection and the input axis of the output projection.
    axis = (1 if conv1d else 0) if produces_h else (0 if conv1d else 1)
    new_weight = weight.index_select(axis, keep).clone()
    new_bias = bias.index_select(0, keep).clone() if (bias is not None and produces_h) else (
        bias.clone() if bias is not None else None)
    with torch.device("meta"):  # no wasted initialisation: the parameters are assigned below
        if conv1d:
            from transformers.pytorch_utils import Conv1D

            new: torch.nn.Module = Conv1D(nf=new_weight.shape[1], nx=new_weight.shape[0])
        else:
            new = torch.nn.Linear(new_weight.shape[1], new_weight.shape[0], bias=bias is not None)
    new.weight = torch.nn.Parameter(new_weight, requires_grad=False)
    if bias is not None:
        new.bias = torch.nn.Parameter(new_bias, requires_grad=False)
    elif conv1d:  # Conv1D always has a bias
        new.bias = torch.nn.Parameter(torch.zeros(new_weight.shape[1], dtype=weight.dtype, device=weight.device))
    new.train(module.training)
    return new


@contextmanager
def pruned(layout: FfnLayout, keep: Mapping[int, np.ndarray]) -> Iterator[None]:
    """Inside the block, layer l's FFN holds only the neurons ``keep[l]`` (layers not in ``keep`` are untouched);
    afterwards the original modules are back in place."""
    swapped: list[tuple[Any, str, Any]] = []
    try:
        for index, kept in keep.items():
            layer = layout.layers[index]
            device = layer.module(layer.out_proj).weight.device
            idx = torch.as_tensor(np.asarray(kept, dtype=np.int64), device=device)
            for attr in (*layer.in_projs, layer.out_proj):
                original = layer.module(attr)
                new = _smaller(original, idx, produces_h=attr != layer.out_proj, conv1d=layer.conv1d)
                swapped.append((layer.mlp, attr, original))
                setattr(layer.mlp, attr, new)
        yield
    finally:
        for mlp, attr, original in reversed(swapped):
            setattr(mlp, attr, original)

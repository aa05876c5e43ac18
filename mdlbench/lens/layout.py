"""Where the FFN of each supported architecture lives: its projections, its activation, and how neurons index them.

A neuron j of layer l is one coordinate of the FFN hidden activation h (the input of the down projection):
row j of every input projection (up, gate) and column j of the output projection (down). GPT-2's Conv1D stores
weights as (in, out), so there it is column j of ``c_fc`` and row j of ``c_proj``. Model types outside
``FFN_LAYOUTS`` are refused with one line naming the supported ones: their FFN may be fused or shaped otherwise,
and a wrong guess would remove the wrong parameters.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mdlbench.errors import InputError


@dataclass(frozen=True, slots=True)
class FfnSpec:
    """The FFN of one model family: attribute names under each transformer block."""

    layers_attr: str  # the list of blocks on ``model.base_model``
    mlp_attr: str
    in_projs: tuple[str, ...]  # produce h (d_model -> d_ff): up, or gate and up
    out_proj: str  # consumes h (d_ff -> d_model): down
    activation_attrs: tuple[str, ...]  # config attributes naming the activation, first present wins
    conv1d: bool = False  # GPT-2: weights stored (in, out)


_GATED = FfnSpec("layers", "mlp", ("gate_proj", "up_proj"), "down_proj", ("hidden_act",))

FFN_LAYOUTS: Mapping[str, FfnSpec] = {
    "gpt2": FfnSpec("h", "mlp", ("c_fc",), "c_proj", ("activation_function",), conv1d=True),
    "gpt_neox": FfnSpec("layers", "mlp", ("dense_h_to_4h",), "dense_4h_to_h", ("hidden_act",)),
    "llama": _GATED,  # also SmolLM/SmolLM2
    "mistral": _GATED,
    "qwen2": _GATED,
    "qwen3": _GATED,
}
# Activations whose output is exactly 0 when a neuron is off: "active" means h != 0 (h > 0 without a gate).
RELU_FAMILY = frozenset({"relu", "relu2", "relu6"})


@dataclass(frozen=True)
class FfnLayer:
    """One layer's FFN modules (live references into the model)."""

    index: int
    mlp: Any  # the module holding the projections
    in_projs: tuple[str, ...]
    out_proj: str
    d_ff: int
    conv1d: bool

    def module(self, attr: str) -> Any:
        return getattr(self.mlp, attr)

    def param_prefix(self, model: Any) -> str:
        """Dotted name of the mlp module, e.g. "transformer.h.3.mlp"."""
        for name, module in model.named_modules():
            if module is self.mlp:
                return name
        raise ValueError(f"layer {self.index}'s mlp is not part of the model")


@dataclass(frozen=True)
class FfnLayout:
    model_type: str
    activation: str
    relu_family: bool
    gated: bool
    layers: tuple[FfnLayer, ...]

    @property
    def d_ff(self) -> int:
        return self.layers[0].d_ff if self.layers else 0


def model_type_of(model: Any) -> str:
    return str(getattr(getattr(model, "config", None), "model_type", type(model).__name__))


def ffn_layout(model: Any) -> FfnLayout:
    """The FFN of every layer, or an InputError naming the model type and the supported ones."""
    model_type = model_type_of(model)
    spec = FFN_LAYOUTS.get(model_type)
    supported = ", ".join(sorted(FFN_LAYOUTS))
    if spec is None:
        raise InputError(f"model type {model_type!r} is not supported by the lens (its FFN layout is unknown); "
                         f"supported: {supported}")
    blocks = getattr(model.base_model, spec.layers_attr, None)
    if blocks is None:
        raise InputError(f"model type {model_type!r}: no {spec.layers_attr!r} blocks where the lens expects them")
    layers = []
    for i, block in enumerate(blocks):
        mlp = getattr(block, spec.mlp_attr, None)
        if mlp is None or not all(hasattr(mlp, a) for a in (*spec.in_projs, spec.out_proj)):
            raise InputError(f"model type {model_type!r}: layer {i} has no {spec.mlp_attr} with "
                             f"{', '.join((*spec.in_projs, spec.out_proj))}; its FFN is laid out differently")
        out = getattr(mlp, spec.out_proj)
        d_ff = int(out.weight.shape[0] if spec.conv1d else out.weight.shape[1])
        layers.append(FfnLayer(i, mlp, spec.in_projs, spec.out_proj, d_ff, spec.conv1d))
    config = model.config
    activation = next((str(getattr(config, a)) for a in spec.activation_attrs if getattr(config, a, None)), "")
    return FfnLayout(model_type, activation, activation in RELU_FAMILY, len(spec.in_projs) > 1, tuple(layers))

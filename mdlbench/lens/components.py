"""A model's parameters split into components (and layers), and each part's reference code: its size as stored.

Components follow ``mdl.params`` (embedding with a tied head, attention, ffn, norm, untied lm_head, other): the
component n_params over all layers sum to the model's unique parameter count. A tensor belongs to layer l when
its name has a ``.h.<l>.`` (GPT-2) or ``.layers.<l>.`` (Llama, GPT-NeoX) segment; embeddings, the final norm and
the head belong to no layer and appear only in the all-layers rows (layer -1).

Reference code (``param_bits_reference``): the bits the component occupies in the checkpoint as shipped.
* A model loaded from GGUF: 8 × the bytes of its tensors in the file, each in its own quantization type
  (SmolLM2's packaged GGUF: Q8_0 embedding at 8.5 bits/parameter, Q4_1 projections at 5, F32 norms at 32). The
  dequantized float32 weights that are scored decode exactly from these bytes, so this is a lossless code of what
  was scored, and the sum over components is the ``gguf-file`` code less the file's header and metadata.
* Otherwise: Σ elements × bits of the narrowest float dtype that holds the tensor exactly (a bf16 checkpoint
  scored in float32 counts 16 bits, true float32 weights 32): the naive code at the storage width.
No zstd on top: zstd-19 of float weights saves little (METHODS §2b) and is slow on 100M-parameter models.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.mdl.params import COMPONENTS, component_of_shared, unique_named_parameters
from mdlbench.mdl.weights_code import is_quantized_by_rtn, narrow_losslessly

ALL_LAYERS = -1
_LAYER = re.compile(r"(?:^|\.)(?:h|layers)\.(\d+)\.")


def layer_of(name: str) -> int:
    """Block index of a parameter name, or -1 outside the blocks.

    Example: "transformer.h.3.mlp.c_fc.weight" -> 3; "model.layers.12.self_attn.q_proj.weight" -> 12;
    "model.embed_tokens.weight" -> -1.
    """
    match = _LAYER.search(name)
    return int(match.group(1)) if match else ALL_LAYERS


@dataclass(frozen=True, slots=True)
class ComponentGroup:
    """The unique tensors of one component (in one layer, or in all: layer -1)."""

    component: str
    layer: int
    names: tuple[str, ...]  # first names of the unique tensors, in model order
    n_params: int
    n_quantized: int  # elements that quantized-k rounds (2+-D float tensors); the rest are kept exactly

    @property
    def key(self) -> tuple[str, int]:
        return self.component, self.layer


def component_groups(model: Any) -> list[ComponentGroup]:
    """Every non-empty (component, layer) group: first the all-layers rows in COMPONENTS order, then the per-layer
    rows (component order, then layer). Invariant: the all-layers n_params sum to the unique parameter count."""
    members: dict[tuple[str, int], list[tuple[str, int, int]]] = {}
    for name, param, names in unique_named_parameters(model):
        component = component_of_shared(names)
        entry = (name, param.numel(), param.numel() if is_quantized_by_rtn(param) else 0)
        members.setdefault((component, ALL_LAYERS), []).append(entry)
        layer = layer_of(name)
        if layer != ALL_LAYERS:
            members.setdefault((component, layer), []).append(entry)
    order = {c: i for i, c in enumerate(COMPONENTS)}
    keys = sorted(members, key=lambda k: (k[1] != ALL_LAYERS, order[k[0]], k[1]))
    return [ComponentGroup(c, layer, tuple(n for n, _, _ in members[(c, layer)]),
                           sum(e for _, e, _ in members[(c, layer)]), sum(q for _, _, q in members[(c, layer)]))
            for c, layer in keys]


@dataclass(frozen=True, slots=True)
class Reference:
    """A component's code as stored: its length and how it was obtained."""

    bits: float
    code: str  # e.g. "gguf Q4_1" or "naive-16"


def _describe(kinds: Mapping[str, int]) -> str:
    return "+".join(sorted(kinds, key=lambda k: -kinds[k]))


def naive_references(model: Any, groups: Sequence[ComponentGroup]) -> dict[tuple[str, int], Reference]:
    """Σ elements × bits of the narrowest exact float dtype, per group."""
    width: dict[str, int] = {}
    for name, param, _ in unique_named_parameters(model):
        width[name] = narrow_losslessly(param.detach().to("cpu")).element_size() * 8
    out = {}
    for g in groups:
        kinds: dict[str, int] = {}
        total = 0.0
        for name in g.names:
            n = model.get_parameter(name).numel()
            total += float(n * width[name])
            kinds[f"naive-{width[name]}"] = kinds.get(f"naive-{width[name]}", 0) + n
        out[g.key] = Reference(total, _describe(kinds))
    return out


def gguf_component(tensor_name: str) -> tuple[str, int]:
    """(component, layer) of a GGUF tensor from llama.cpp's standard names.

    Example: "blk.3.ffn_up.weight" -> ("ffn", 3); "blk.0.attn_norm.weight" -> ("norm", 0);
    "token_embd.weight" -> ("embedding", -1); "output.weight" -> ("lm_head", -1).
    """
    parts = tensor_name.split(".")
    if parts[0] == "blk" and len(parts) > 2 and parts[1].isdigit():
        kind = parts[2]
        if "norm" in kind:
            return "norm", int(parts[1])
        if kind.startswith("attn"):
            return "attention", int(parts[1])
        if kind.startswith("ffn"):
            return "ffn", int(parts[1])
        return "other", int(parts[1])
    if parts[0] in ("token_embd", "position_embd"):
        return "embedding", ALL_LAYERS
    if "norm" in parts[0]:
        return "norm", ALL_LAYERS
    if parts[0] == "output":
        return "lm_head", ALL_LAYERS
    return "other", ALL_LAYERS


@functools.lru_cache(maxsize=4)
def gguf_tensors(gguf_path: Path) -> tuple[tuple[str, int, int, str], ...]:
    """(name, bytes, elements, quantization type) of every tensor in a GGUF file (cached: parsing the
    metadata, tokenizer included, is slow)."""
    import gguf  # only GGUF models need it

    return tuple((t.name, int(t.n_bytes), int(t.n_elements), t.tensor_type.name)
                 for t in gguf.GGUFReader(str(gguf_path)).tensors)


def gguf_references(gguf_path: Path,
                    groups: Sequence[ComponentGroup]) -> dict[tuple[str, int], Reference] | str:
    """8 × the file bytes of each group's tensors, or the reason the file's tensors do not match the groups."""
    sums: dict[tuple[str, int], list[Any]] = {}
    for name, n_bytes, n_elements, kind in gguf_tensors(Path(gguf_path)):
        component, layer = gguf_component(name)
        keys = [(component, ALL_LAYERS)] + ([(component, layer)] if layer != ALL_LAYERS else [])
        for key in keys:
            entry = sums.setdefault(key, [0, 0, {}])
            entry[0] += n_bytes
            entry[1] += n_elements
            entry[2][kind] = entry[2].get(kind, 0) + n_elements
    out = {}
    for g in groups:
        n_bytes, n_elements, kinds = sums.get(g.key, [0, 0, {}])
        if n_elements != g.n_params:
            return (f"{g.component} (layer {g.layer}) has {g.n_params} parameters loaded but {n_elements} in the "
                    "GGUF file")
        out[g.key] = Reference(8.0 * n_bytes, f"gguf {_describe(kinds)}")
    return out


def references(model: Any, groups: Sequence[ComponentGroup],
               gguf_path: Path | None) -> tuple[dict[tuple[str, int], Reference], str]:
    """The reference code of every group, and a note (empty, or why GGUF bytes could not be used)."""
    if gguf_path is not None:
        found = gguf_references(gguf_path, groups)
        if not isinstance(found, str):
            return found, ""
        return naive_references(model, groups), f"GGUF tensors not used as the reference: {found}"
    return naive_references(model, groups), ""


# llama.cpp's names of the FFN projections, by the attribute names of ``layout.FFN_LAYOUTS``.
GGUF_FFN_NAMES = {"gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down", "c_fc": "ffn_up",
                  "c_proj": "ffn_down", "dense_h_to_4h": "ffn_up", "dense_4h_to_h": "ffn_down"}


def ffn_tensor_widths(model: Any, layout: Any, gguf_path: Path | None) -> dict[tuple[int, str, str], float]:
    """Stored bits per element of each FFN tensor, keyed (layer, projection attribute, "weight" | "bias"): its
    quantization type in the GGUF file (bytes × 8 / elements), else the narrowest exact float dtype."""
    stored: dict[str, float] = {}
    if gguf_path is not None:
        stored = {name: 8.0 * n_bytes / n_elements for name, n_bytes, n_elements, _ in gguf_tensors(Path(gguf_path))}
    widths = {}
    for layer in layout.layers:
        for attr in (*layer.in_projs, layer.out_proj):
            module = layer.module(attr)
            for kind in ("weight", "bias"):
                param = getattr(module, kind, None)
                if param is None:
                    continue
                gguf_name = f"blk.{layer.index}.{GGUF_FFN_NAMES.get(attr, attr)}.{kind}"
                widths[(layer.index, attr, kind)] = stored.get(
                    gguf_name, float(narrow_losslessly(param.detach().to("cpu")).element_size() * 8))
    return widths

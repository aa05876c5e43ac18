"""Parameter accounting: unique parameter elements, split by component, plus the architecture numbers.

The parameter cost of a two-part code (METHODS §2a) is charged per *unique* parameter element:
* tied weights (GPT-2's ``lm_head.weight is transformer.wte.weight``) are one tensor and are counted once;
* buffers (rotary ``inv_freq`` tables, causal masks) are recomputed from code and are not counted.

Components come from module-name rules that cover GPT-2, Llama/SmolLM/Qwen/Mistral and GPT-NeoX/Pythia names.
Anything unmatched lands in ``other``, which stays a visible column so a new architecture cannot silently
shift parameters between components.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mdlbench.config import context_length_of

if TYPE_CHECKING:
    import torch

COMPONENTS = ("embedding", "attention", "ffn", "norm", "lm_head", "other")

# Module-name segments (``model.layers.0.mlp.up_proj.weight`` -> segments) that identify a component.
_LM_HEAD_SEGMENTS = frozenset({"lm_head", "embed_out"})  # embed_out: GPT-NeoX/Pythia's untied output layer
_EMBEDDING_SEGMENTS = frozenset({"wte", "wpe", "tok_embeddings"})  # plus any segment containing "embed"
_ATTENTION_SEGMENTS = frozenset({
    "c_attn", "q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "query_key_value", "wq", "wk", "wv", "wo",
})  # plus any segment containing "attn" or "attention"
_FFN_SEGMENTS = frozenset({
    "mlp", "ffn", "feed_forward", "feedforward", "block_sparse_moe", "experts", "moe",
    "gate_proj", "up_proj", "down_proj", "gate_up_proj", "c_fc", "dense_h_to_4h", "dense_4h_to_h",
    "fc1", "fc2", "w1", "w2", "w3",
})


def component_of(name: str) -> str:
    """Component of one parameter, from its dotted name.

    Example: ``transformer.h.0.mlp.c_proj.weight`` -> "ffn" but ``transformer.h.0.attn.c_proj.weight`` ->
    "attention"; ``model.layers.0.post_attention_layernorm.weight`` -> "norm" (norms are checked before
    attention because their names often contain "attention").
    """
    segments = name.lower().split(".")
    if any(s in _LM_HEAD_SEGMENTS for s in segments) or segments[0] == "output":
        return "lm_head"
    if any(s in _EMBEDDING_SEGMENTS or "embed" in s for s in segments):
        return "embedding"
    if any("norm" in s or s.startswith("ln_") or s == "ln" for s in segments):
        return "norm"
    if any(s in _ATTENTION_SEGMENTS or "attn" in s or "attention" in s for s in segments):
        return "attention"
    if any(s in _FFN_SEGMENTS for s in segments):
        return "ffn"
    return "other"


def unique_named_parameters(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Parameter, tuple[str, ...]]]:
    """Each unique parameter tensor once: (first name, tensor, every name it appears under).

    Unique means distinct ``Parameter`` objects and, on real devices, distinct storage (the same data_ptr,
    shape and dtype) -- some loaders tie weights by sharing storage rather than the Parameter object. Meta
    tensors all have data_ptr 0, so storage is compared only for non-meta tensors.
    """
    by_key: dict[Any, list[Any]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        key: Any = id(param)
        if param.device.type != "meta" and param.numel() > 0:
            key = (param.device, param.data_ptr(), tuple(param.shape), param.dtype)
        if key in by_key:
            by_key[key][2].append(name)
        else:
            by_key[key] = [name, param, [name]]
    for name, param, names in by_key.values():
        yield name, param, tuple(names)


def component_of_shared(names: tuple[str, ...]) -> str:
    """Component of one unique tensor from every name it appears under (``unique_named_parameters``).

    A tied input/output matrix is an embedding that is *also* used as the output layer: "lm_head" is reserved
    for an untied output layer, whatever order the names come in.
    """
    components = [component_of(n) for n in names]
    return "embedding" if "embedding" in components else components[0]


@dataclasses.dataclass(frozen=True, slots=True)
class ParamCount:
    """Unique parameter elements by component, and the architecture read from the config.

    Architecture fields are None when the config does not define them (a custom model without a config).
    """

    params_embedding: int
    params_attention: int
    params_ffn: int
    params_norm: int
    params_lm_head: int
    params_other: int
    params_total: int
    n_layers: int | None
    d_model: int | None
    d_ff: int | None
    n_heads: int | None
    vocab_size: int | None
    context_length: int | None
    ffn_ratio: float | None  # d_ff / d_model
    ffn_param_share: float  # params_ffn / params_total

    def as_columns(self) -> dict[str, int | float | None]:
        """Flat dict, keys as above, for the ``runs`` table."""
        return dataclasses.asdict(self)


def count_parameters(model: torch.nn.Module) -> ParamCount:
    """Unique parameter elements by component plus architecture.

    Example: a tied GPT-2 with n_layer=2, n_embd=16, vocab 50, n_positions 32 has
    embedding = 50*16 + 32*16 = 1312 and lm_head = 0 (the output matrix is the token embedding).
    Invariant: the six ``params_*`` components sum to ``params_total``.
    """
    by_component = dict.fromkeys(COMPONENTS, 0)
    for _, param, names in unique_named_parameters(model):
        by_component[component_of_shared(names)] += param.numel()
    total = sum(by_component.values())
    arch = architecture(getattr(model, "config", None))
    return ParamCount(
        **{f"params_{c}": n for c, n in by_component.items()},
        params_total=total,
        **arch,
        ffn_param_share=by_component["ffn"] / total if total else 0.0,
    )


def _first_attr(config: Any, names: tuple[str, ...]) -> int | None:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def architecture(config: Any) -> dict[str, Any]:
    """n_layers, d_model, d_ff, n_heads, vocab_size, context_length, ffn_ratio from a transformers config.

    Several names are tried because families differ (GPT-2: n_layer/n_embd/n_inner/n_positions; Llama and
    GPT-NeoX: num_hidden_layers/hidden_size/intermediate_size/max_position_embeddings). GPT-2 leaves
    ``n_inner=None`` to mean 4 * n_embd, which is what its MLP builds.
    """
    if config is not None and hasattr(config, "get_text_config"):
        config = config.get_text_config()  # multimodal wrappers keep the language model's numbers there
    n_layers = _first_attr(config, ("num_hidden_layers", "n_layer", "num_layers", "n_layers"))
    d_model = _first_attr(config, ("hidden_size", "n_embd", "d_model", "dim"))
    d_ff = _first_attr(config, ("intermediate_size", "n_inner", "ffn_dim", "d_ff", "hidden_dim"))
    if d_ff is None and d_model is not None and getattr(config, "model_type", None) == "gpt2":
        d_ff = 4 * d_model
    n_heads = _first_attr(config, ("num_attention_heads", "n_head", "num_heads", "n_heads"))
    vocab_size = _first_attr(config, ("vocab_size",))
    context_length = context_length_of(config)
    return {
        "n_layers": n_layers, "d_model": d_model, "d_ff": d_ff, "n_heads": n_heads, "vocab_size": vocab_size,
        "context_length": context_length,
        "ffn_ratio": d_ff / d_model if d_ff is not None and d_model else None,
    }


def storage_dtype_bits(model: torch.nn.Module) -> int:
    """Bits per element of the dtype holding most unique parameter elements (32 for float32, 16 for bf16)."""
    elements_by_bits: dict[int, int] = {}
    for _, param, _ in unique_named_parameters(model):
        bits = param.element_size() * 8
        elements_by_bits[bits] = elements_by_bits.get(bits, 0) + param.numel()
    if not elements_by_bits:
        raise ValueError("model has no parameters")
    return max(elements_by_bits, key=lambda b: (elements_by_bits[b], b))

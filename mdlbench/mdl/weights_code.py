"""Codes for the weights themselves: serialized-and-compressed, as shipped (GGUF), and quantized.

Each function returns a ``WeightCode``: the number of bits a decoder needs to rebuild the parameters (the
architecture, i.e. tensor names and shapes, is part of the program and is not charged here, as in the naive
``b * P`` code). The codes (METHODS §2b, §2c):

* ``checkpoint-zstd``: zstd-19 of the exact safetensors bytes (JSON header included) of the unique-parameter
  state dict. Float tensors are first narrowed to bf16/fp16 *only where that is exact*, so a bf16 checkpoint
  upcast to float32 for scoring is not charged 32 bits per parameter, yet the decoded weights are bit for bit
  the ones that were scored.
* ``gguf-file``: 8 * the file size: the weights exactly as shipped.
* ``quantized-<k>``: round-to-nearest per output channel (min/max, 2**k levels, fp16 scale and offset per
  group), packed k bits per integer, then zstd-19. Lossy: the data must be re-scored under the dequantized
  model that ``quantize_model`` returns, so L(data | model) is measured, not assumed.
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
import zstandard

from mdlbench.codelength import bytes_to_bits
from mdlbench.mdl.params import unique_named_parameters

ZSTD_LEVEL = 19
# Only these float dtypes are narrowed; integer and already-16-bit tensors are serialized as they are.
_NARROWABLE = (torch.float32, torch.float64)
_PACK_CHUNK_ELEMENTS = 1 << 22  # a multiple of 8, so every chunk of k-bit integers ends on a byte boundary


@dataclasses.dataclass(frozen=True, slots=True)
class WeightCode:
    """One parameter code: its name (a row of the ``two_part`` table), its length, and how it was made."""

    param_code: str
    model_bits: float
    detail: str  # codec, level, library versions, dtypes: enough to reproduce the number


@dataclasses.dataclass(frozen=True, slots=True)
class QuantizedModel:
    """A k-bit code and the dequantized copy of the model it decodes to (the one to re-score the data with)."""

    code: WeightCode
    model: torch.nn.Module
    packed_bytes: int  # zstd size of the packed integers
    side_bytes: int  # zstd size of scales, offsets and the unquantized (1-D) tensors


def zstd_codec_name(level: int = ZSTD_LEVEL) -> str:
    """E.g. "zstd-19 (libzstd 1.5.7, python-zstandard 0.25.0)"."""
    libzstd = ".".join(map(str, zstandard.ZSTD_VERSION))
    return f"zstd-{level} (libzstd {libzstd}, python-zstandard {zstandard.__version__})"


def zstd_size_bytes(data: bytes, level: int = ZSTD_LEVEL) -> int:
    """Size of one zstd frame of ``data`` (single-threaded, so the size does not depend on the machine)."""
    return len(zstandard.ZstdCompressor(level=level).compress(data))


def narrow_losslessly(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor in bf16 or fp16 if that round-trips exactly (NaNs compared as equal), else unchanged."""
    if tensor.dtype not in _NARROWABLE:
        return tensor
    for dtype in (torch.bfloat16, torch.float16):
        narrow = tensor.to(dtype)
        if torch.equal(narrow.to(tensor.dtype).nan_to_num(0.0), tensor.nan_to_num(0.0)) and torch.equal(
                narrow.isnan(), tensor.isnan()):
            return narrow
    return tensor


def unique_state_dict(model: torch.nn.Module, *, lossless_narrowing: bool = True) -> dict[str, torch.Tensor]:
    """{first name: CPU contiguous tensor} for each unique parameter (tied weights once, no buffers)."""
    state: dict[str, torch.Tensor] = {}
    for name, param, _ in unique_named_parameters(model):
        tensor = param.detach().to("cpu").contiguous()
        state[name] = narrow_losslessly(tensor) if lossless_narrowing else tensor
    return state


def serialize_weights(model: torch.nn.Module, *, lossless_narrowing: bool = True) -> bytes:
    """Exact safetensors bytes (JSON header + raw data) of the unique-parameter state dict."""
    return safetensors.torch.save(unique_state_dict(model, lossless_narrowing=lossless_narrowing))


def _dtype_summary(tensors: Sequence[torch.Tensor]) -> str:
    counts: dict[str, int] = {}
    for t in tensors:
        key = str(t.dtype).removeprefix("torch.")
        counts[key] = counts.get(key, 0) + t.numel()
    return ", ".join(f"{k}: {v} params" for k, v in sorted(counts.items()))


def checkpoint_code(model: torch.nn.Module, *, zstd_level: int = ZSTD_LEVEL,
                    lossless_narrowing: bool = True) -> WeightCode:
    """``checkpoint-zstd``: 8 * zstd size of the exact safetensors serialization, header included.

    Invariant: for random float weights this is at most the naive cost plus the container overhead
    (header + zstd frame); for all-zero weights it is a tiny fraction of it.
    """
    state = unique_state_dict(model, lossless_narrowing=lossless_narrowing)
    raw = safetensors.torch.save(state)
    n_bytes = zstd_size_bytes(raw, zstd_level)
    detail = (f"safetensors {safetensors.__version__} incl. JSON header ({len(raw)} bytes raw); "
              f"{zstd_codec_name(zstd_level)}; dtypes {_dtype_summary(list(state.values()))}"
              f"{'; exact bf16/fp16 narrowing' if lossless_narrowing else ''}")
    return WeightCode("checkpoint-zstd", float(bytes_to_bits(n_bytes)), detail)


def gguf_file_code(gguf_path: Path) -> WeightCode:
    """``gguf-file``: 8 * the file size. The file also holds the tokenizer when ``gguf_embeds_tokenizer``."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FileNotFoundError(f"GGUF file {str(gguf_path)!r} does not exist")
    return WeightCode("gguf-file", float(bytes_to_bits(gguf_path.stat().st_size)),
                      f"GGUF file {gguf_path.name} as shipped")


def gguf_embeds_tokenizer(gguf_path: Path) -> bool:
    """Whether the GGUF metadata carries the vocabulary (``tokenizer.ggml.tokens``), as llama.cpp files do."""
    import gguf  # only GGUF runs need it

    return "tokenizer.ggml.tokens" in gguf.GGUFReader(str(gguf_path)).fields


# ---------------------------------------------------------------------------------------------- quantization


def pack_bits(values: np.ndarray, bits: int) -> bytes:
    """Pack unsigned integers < 2**bits, ``bits`` each, most significant bit first, zero-padded to a byte.

    Example: pack_bits([1, 2, 3], 2) -> 0b01_10_11_00 = b"\\x6c".
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    if bits == 8:
        return flat.tobytes()
    out = []
    for start in range(0, flat.size, _PACK_CHUNK_ELEMENTS):
        chunk = flat[start:start + _PACK_CHUNK_ELEMENTS]
        # (n, 8) bit matrix, keep the low ``bits`` columns: shape (n, bits) -> row-major bit stream.
        bit_matrix = np.unpackbits(chunk[:, None], axis=1)[:, 8 - bits:]
        out.append(np.packbits(bit_matrix.reshape(-1)).tobytes())
    return b"".join(out)


def unpack_bits(data: bytes, bits: int, count: int) -> np.ndarray:
    """Inverse of ``pack_bits``: the first ``count`` integers."""
    if bits == 8:
        return np.frombuffer(data, dtype=np.uint8)[:count].copy()
    stream = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[:count * bits].reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1)).astype(np.uint8)
    return (stream * weights).sum(axis=1).astype(np.uint8)


@dataclasses.dataclass(frozen=True, slots=True)
class RtnTensor:
    """Round-to-nearest quantization of one (rows, cols) matrix in groups along each row."""

    q: np.ndarray  # uint8, (rows, cols): integers in [0, 2**bits)
    scale: np.ndarray  # float16, (rows, n_groups)
    offset: np.ndarray  # float16, (rows, n_groups): the group minimum
    dequantized: torch.Tensor  # float32, (rows, cols): q * scale + offset, what the decoder rebuilds


def quantize_rtn(matrix: torch.Tensor, bits: int, group_size: int | None = None) -> RtnTensor:
    """Asymmetric min/max round-to-nearest along rows, ``group_size`` columns per scale (None: whole row).

    Example: row [0, 1, 2, 3] at 2 bits: offset 0, scale 1, q = [0, 1, 2, 3], dequantized exactly.
    Invariant: |dequantized - matrix| <= scale / 2 (+ fp16 rounding of scale and offset).
    """
    if not 1 <= bits <= 8:
        raise ValueError(f"bits must be in 1..8, got {bits}")
    rows, cols = matrix.shape
    g = cols if group_size is None else group_size
    if g <= 0:
        raise ValueError(f"group_size must be positive, got {group_size}")
    w = matrix.detach().to(torch.float32)
    pad = (-cols) % g
    if pad:
        # Repeat the last column: it changes no group's min/max, and the padding is dropped before packing.
        w = torch.cat([w, w[:, -1:].expand(rows, pad)], dim=1)
    groups = w.reshape(rows, -1, g)  # (rows, n_groups, g)
    lo = groups.amin(dim=2)
    hi = groups.amax(dim=2)
    levels = (1 << bits) - 1
    # Scale and offset are what the code stores (fp16), so the integers are computed against the rounded
    # values: the decoder's q * scale + offset is then the nearest grid point to each weight.
    offset16 = lo.to(torch.float16)
    scale16 = ((hi - lo) / levels).to(torch.float16)
    if not (torch.isfinite(offset16).all() and torch.isfinite(scale16).all()):
        raise ValueError("weights outside the float16 range cannot be coded with fp16 scales")
    offset = offset16.to(torch.float32)[..., None]  # (rows, n_groups, 1)
    scale = scale16.to(torch.float32)[..., None]
    safe_scale = torch.where(scale > 0, scale, torch.ones_like(scale))  # constant group: every q is 0
    q = torch.clamp(torch.round((groups - offset) / safe_scale), 0, levels)
    dequantized = (q * scale + offset).reshape(rows, -1)[:, :cols]
    return RtnTensor(
        q=q.reshape(rows, -1)[:, :cols].to(torch.uint8).cpu().numpy(),
        scale=scale16.cpu().numpy(),
        offset=offset16.cpu().numpy(),
        dequantized=dequantized,
    )


def _owner_is_conv1d(model: torch.nn.Module, name: str) -> bool:
    # GPT-2's Conv1D stores weight as (in, out); its output channels are columns, not rows.
    module_name = name.rpartition(".")[0]
    return type(model.get_submodule(module_name)).__name__ == "Conv1D" if module_name else False


def is_quantized_by_rtn(param: torch.Tensor) -> bool:
    """Whether ``quantized-<k>`` rounds this tensor (2+ dims, floating point) or keeps it exactly (1-D, ints)."""
    return param.ndim >= 2 and param.is_floating_point()


@dataclasses.dataclass(frozen=True, slots=True)
class QuantizedTensor:
    """One tensor as ``quantized-<k>`` codes it: its packed integers (empty when kept exactly), its side bytes
    (fp16 scales + offsets, or the exact narrowed tensor), and what the decoder rebuilds (None when exact)."""

    name: str
    packed: bytes
    side: bytes
    restored: torch.Tensor | None  # same shape and dtype as the parameter


def quantize_tensors(model: torch.nn.Module, bits: int, names: Collection[str] | None = None, *,
                     group_size: int | None = None) -> Iterator[QuantizedTensor]:
    """The ``quantized-<bits>`` code of each unique parameter (or of those in ``names``), in model order.

    Tensors with 2+ dims are RTN-quantized per output channel (GPT-2's Conv1D weights are transposed first, so
    a channel is always an output feature); 1-D tensors (norm gains, biases) are kept exactly, narrowed
    losslessly. The model is not modified. Concatenating ``packed`` and ``side`` over any subset, in this order,
    is that subset's code (``subset_code``); over all parameters it is ``quantize_model``'s.
    """
    wanted = None if names is None else set(names)
    for name, param, _ in unique_named_parameters(model):
        if wanted is not None and name not in wanted:
            continue
        if not is_quantized_by_rtn(param):
            exact = narrow_losslessly(param.detach().to("cpu").contiguous())
            yield QuantizedTensor(name, b"", exact.reshape(-1).view(torch.uint8).numpy().tobytes(), None)
            continue
        transpose = param.ndim == 2 and _owner_is_conv1d(model, name)
        matrix = param.T if transpose else param.reshape(param.shape[0], -1)  # (out channels, inputs)
        rtn = quantize_rtn(matrix, bits, group_size)
        restored = rtn.dequantized.T if transpose else rtn.dequantized.reshape(param.shape)
        yield QuantizedTensor(name, pack_bits(rtn.q, bits), rtn.scale.tobytes() + rtn.offset.tobytes(),
                              restored.to(param.dtype))


@dataclasses.dataclass(frozen=True, slots=True)
class SubsetCode:
    """Length of the ``quantized-<k>`` code of a set of tensors: zstd of their packed integers + zstd of the side
    stream (two frames, as ``quantize_model`` writes them for the whole model)."""

    bits: int
    packed_bytes: int
    side_bytes: int
    n_quantized: int  # elements rounded to the k-bit grid
    n_exact: int  # elements kept exactly (1-D tensors)

    @property
    def model_bits(self) -> float:
        return float(bytes_to_bits(self.packed_bytes + self.side_bytes))


def subset_code(pieces: Sequence[QuantizedTensor], bits: int, *, n_quantized: int, n_exact: int,
                zstd_level: int = ZSTD_LEVEL) -> SubsetCode:
    """Code length of ``pieces`` (from ``quantize_tensors``, in its order)."""
    packed = zstd_size_bytes(b"".join(p.packed for p in pieces), zstd_level)
    side = zstd_size_bytes(b"".join(p.side for p in pieces), zstd_level)
    return SubsetCode(bits, packed, side, n_quantized, n_exact)


def rtn_detail(code: SubsetCode, group_size: int | None, zstd_level: int = ZSTD_LEVEL) -> str:
    return (f"RTN {code.bits}-bit min/max per output channel, group "
            f"{'whole row' if group_size is None else group_size}, fp16 scale+offset; "
            f"{code.n_quantized} quantized + {code.n_exact} exact params; packed {code.packed_bytes} B + side "
            f"{code.side_bytes} B; {zstd_codec_name(zstd_level)}")


def quantize_model(model: torch.nn.Module, bits: int, *, group_size: int | None = None,
                   zstd_level: int = ZSTD_LEVEL) -> QuantizedModel:
    """``quantized-<bits>``: code length of the RTN-quantized weights, and the dequantized copy of the model.

    Tensors with 2+ dims (embeddings, projections, the output layer) are quantized per output channel; 1-D
    tensors (norm gains, biases) are few and kept exactly (narrowed losslessly) in the side stream. The code
    is zstd of the packed integers plus zstd of the fp16 scales/offsets and the exact tensors. The input
    model is not modified; ties survive because ``copy.deepcopy`` keeps shared parameters shared.
    """
    dequantized_model = copy.deepcopy(model)
    pieces: list[QuantizedTensor] = []
    n_quantized = n_exact = 0
    with torch.no_grad():
        for piece in quantize_tensors(dequantized_model, bits, group_size=group_size):
            param = dequantized_model.get_parameter(piece.name)
            if piece.restored is None:
                n_exact += param.numel()
            else:
                param.copy_(piece.restored)
                n_quantized += param.numel()
            # Keep only the bytes: the restored tensor now lives in the copy (one copy of the weights, not two).
            pieces.append(QuantizedTensor(piece.name, piece.packed, piece.side, None))
    code = subset_code(pieces, bits, n_quantized=n_quantized, n_exact=n_exact, zstd_level=zstd_level)
    weight_code = WeightCode(f"quantized-{bits}", code.model_bits, rtn_detail(code, group_size, zstd_level))
    return QuantizedModel(weight_code, dequantized_model, code.packed_bytes, code.side_bytes)


# ------------------------------------------------------------------------------------------------- tokenizer


def _container(files: Sequence[Path], root: Path | None) -> bytes:
    # name NUL length NUL bytes, files in name order: deterministic, and the names are charged too.
    parts = []
    for path in sorted(files, key=lambda p: str(p)):
        name = str(path.relative_to(root)) if root is not None else path.name
        data = path.read_bytes()
        parts.append(name.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return b"".join(parts)


def tokenizer_code(tokenizer: Any, *, files: Sequence[Path] | None = None,
                   zstd_level: int = ZSTD_LEVEL) -> WeightCode:
    """``tokenizer_bits``: 8 * zstd size of the tokenizer files (one frame over all of them).

    Uses ``files`` when given (e.g. tokenizer.json, tokenizer_config.json of the local checkpoint), else
    whatever ``tokenizer.save_pretrained`` writes into a temporary directory. A None tokenizer (byte-level
    scoring) costs 0 bits.
    """
    if tokenizer is None and files is None:
        return WeightCode("tokenizer", 0.0, "no tokenizer")
    if files is not None:
        paths = [Path(f) for f in files]
        raw = _container(paths, None)
        source = "given files"
    else:
        with tempfile.TemporaryDirectory() as tmp:
            tokenizer.save_pretrained(tmp)
            root = Path(tmp)
            paths = [p for p in root.rglob("*") if p.is_file()]
            raw = _container(paths, root)
            source = "save_pretrained"
    names = ", ".join(sorted(p.name for p in paths))
    n_bytes = zstd_size_bytes(raw, zstd_level)
    detail = f"{source}: {names} ({len(raw)} bytes raw); {zstd_codec_name(zstd_level)}"
    return WeightCode("tokenizer", float(bytes_to_bits(n_bytes)), detail)

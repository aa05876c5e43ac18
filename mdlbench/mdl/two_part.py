"""Two-part codes: L(model) + L(tokenizer) + L(data | model), and when a model pays for itself.

Pure arithmetic on bits and bytes (METHODS §2, §6), the ``two_part`` and ``two_part_vs_baseline`` tables,
and ``two_part_rows``, the one function the pipeline calls. Importing this module registers both tables and
does not import torch; ``two_part_rows`` imports the weight codes only when called.

Units: ``*_bits`` are bits, ``n_bytes`` is UTF-8 bytes of the scored corpus, rates are bits per byte, and
``adjusted_compression_rate`` is a *fraction* (DeepMind print it as a percentage: 1.0 here is 100%).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mdlbench.codelength import BITS_PER_BYTE
from mdlbench.errors import InputError

if TYPE_CHECKING:
    import torch


EXPLANATION = (
    "How to read the two-part numbers. A language model compresses text: data_bits is how many bits the "
    "corpus costs when coded with the model's predictions (data_bits_per_byte; 8 means no better than storing "
    "raw bytes). But a receiver cannot decode those bits without the model itself, so an honest total also "
    "pays for the parameters (model_bits) and the tokenizer (tokenizer_bits): total_bits = model_bits + "
    "tokenizer_bits + data_bits. Each param_code is a different way of writing the parameters down: "
    "naive-16/naive-32 store every unique parameter in 16 or 32 bits, checkpoint-zstd compresses the exact "
    "weights losslessly, gguf-file is the file as shipped, and quantized-k rounds weights to k bits (the data "
    "are then re-scored with the rounded model, so any loss of quality is counted). adjusted_compression_rate "
    "is DeepMind's (data + model)/(raw) as a fraction: above 1.0 the model plus its compressed output is "
    "larger than the text itself. A model pays for itself only on enough text: break_even_bytes is the corpus "
    "size above which the total beats a baseline (raw bytes at 8 bits/byte, or gzip, xz, ...), and "
    "bits_saved_per_param is how many bits each parameter saves on this corpus compared with the baseline. "
    "A parameter costing b bits pays off only once it saves more than b bits."
)



# -------------------------------------------------------------------------------------------- pure arithmetic


def naive_model_bits(n_params: int, bits_per_param: float) -> float:
    """L(model) = b * P. Example: 70e9 params at 16 bits -> 1.12e12 bits."""
    return float(bits_per_param) * n_params


def adjusted_compression_rate(data_bits: float, model_bits: float, n_bytes: int) -> float:
    """DeepMind's adjusted rate (|compressed data| + |model|) / |raw data|, as a fraction (x100 for %).

    Example (Delétang et al. Table 1, Chinchilla 70B on 1 GB): raw rate 8.3% means data_bits = 0.083 * 8e9,
    model_bits = 16 * 70e9, so the rate is 0.083 + 140 = 140.083, i.e. 14008.3%.
    """
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    return (data_bits + model_bits) / (BITS_PER_BYTE * n_bytes)


def break_even_bytes(fixed_bits: float, model_bits_per_byte: float, baseline_bits_per_byte: float) -> float | None:
    """n* = L(model) / (bpb_baseline - bpb_model): the two-part code wins iff the corpus has more bytes.

    ``fixed_bits`` is what is paid once (parameters, and tokenizer when included). None when the model is not
    better per byte than the baseline: then no corpus size makes it pay off.
    Example: Chinchilla 70B at 16 bits/param (1.12e12 bits), 0.664 bpb vs raw bytes: n* = 1.12e12 / 7.336
    = 1.53e11 bytes (153 GB).
    """
    saving_per_byte = baseline_bits_per_byte - model_bits_per_byte
    if not saving_per_byte > 0:
        return None
    return fixed_bits / saving_per_byte


def bits_saved_per_param(baseline_bits: float, data_bits: float, n_params: int) -> float:
    """κ = (L_baseline(D) - L(D | θ)) / P (METHODS §6): a parameter costing b bits pays off iff κ > b.

    Example: Chinchilla 70B on 1 GB of enwik9: (8e9 - 0.664e9) / 70e9 = 0.105 bit/param.
    """
    if n_params <= 0:
        raise ValueError(f"n_params must be positive, got {n_params}")
    return (baseline_bits - data_bits) / n_params


def choice_cost_bits(n_choices: int) -> float:
    """log2(number of alternatives tried): the price of reporting the best of them (e.g. the best k)."""
    if n_choices < 1:
        raise ValueError(f"n_choices must be at least 1, got {n_choices}")
    return math.log2(n_choices)


@dataclasses.dataclass(frozen=True, slots=True)
class TwoPartCode:
    """The three parts of one two-part code, in bits."""

    param_code: str
    model_bits: float
    tokenizer_bits: float
    data_bits: float
    detail: str = ""

    @property
    def total_bits(self) -> float:
        return self.model_bits + self.tokenizer_bits + self.data_bits


def best_of(codes: Sequence[TwoPartCode], param_code: str = "quantized-best") -> TwoPartCode:
    """The code with the smallest total, charged log2(len(codes)) extra model bits for having chosen it."""
    if not codes:
        raise ValueError("best_of needs at least one code")
    best = min(codes, key=lambda c: c.total_bits)
    choice_bits = choice_cost_bits(len(codes))
    return dataclasses.replace(
        best, param_code=param_code, model_bits=best.model_bits + choice_bits,
        detail=f"{best.param_code} + log2({len(codes)}) = {choice_bits:.3f} bits for the choice; {best.detail}")


def two_part_row(code: TwoPartCode, *, n_bytes: int, n_params: int) -> dict[str, Any]:
    """One row of the ``two_part`` table (all columns, schema order).

    Break-even against raw bytes charges the tokenizer too: it is paid once, like the parameters.
    """
    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    data_bpb = code.data_bits / n_bytes
    return {
        "param_code": code.param_code,
        "model_bits": code.model_bits,
        "tokenizer_bits": code.tokenizer_bits,
        "data_bits": code.data_bits,
        "total_bits": code.total_bits,
        "n_bytes": n_bytes,
        "data_bits_per_byte": data_bpb,
        "total_bits_per_byte": code.total_bits / n_bytes,
        # DeepMind's definition has no tokenizer term; total_bits_per_byte / 8 is the version with it.
        "adjusted_compression_rate": adjusted_compression_rate(code.data_bits, code.model_bits, n_bytes),
        "n_params": n_params,
        "break_even_bytes_vs_uniform": break_even_bytes(code.model_bits + code.tokenizer_bits, data_bpb,
                                                        BITS_PER_BYTE),
        "detail": code.detail,
    }


@dataclasses.dataclass(frozen=True, slots=True)
class Baseline:
    """A compressor result on the *same* bytes the model scored (same n_bytes)."""

    name: str  # e.g. "gzip-9"
    mode: str  # "per_document" or "concatenated"
    bits_per_byte: float


def vs_baseline_rows(two_part_rows: Sequence[Mapping[str, Any]], baselines: Sequence[Baseline]) -> list[dict[str, Any]]:
    """Rows of ``two_part_vs_baseline``: every (param code, baseline) pair.

    Example: a row with model_bits 1.12e12, tokenizer_bits 0, data_bits 0.664e9 on n_bytes 1e9, against
    gzip at 2.584 bpb: break_even_bytes = 1.12e12 / 1.92 = 5.83e11, bits_saved_per_param = 1.92e9 / P.
    """
    rows = []
    for row in two_part_rows:
        n_bytes, n_params = int(row["n_bytes"]), int(row["n_params"])
        fixed_bits = row["model_bits"] + row["tokenizer_bits"]
        for baseline in baselines:
            rows.append({
                "param_code": row["param_code"],
                "baseline": baseline.name,
                "baseline_mode": baseline.mode,
                "baseline_bits_per_byte": baseline.bits_per_byte,
                "break_even_bytes": break_even_bytes(fixed_bits, row["data_bits_per_byte"], baseline.bits_per_byte),
                "bits_saved_per_param": bits_saved_per_param(baseline.bits_per_byte * n_bytes, row["data_bits"],
                                                             n_params),
            })
    return rows


# ------------------------------------------------------------------------------------------ the pipeline entry

# Code families accepted by ``two_part_rows``; "naive-<b>" and "quantized-<k>" select a single width.
CODE_FAMILIES = ("naive", "checkpoint-zstd", "gguf-file", "quantized")
CODE_ALIASES = {"checkpoint": "checkpoint-zstd", "gguf": "gguf-file"}
QUANTIZED_WIDTHS = (8, 6, 4, 3, 2)
# What `mdlbench run` computes unless told otherwise. checkpoint-zstd compresses every weight byte at zstd-19,
# which is slow on float weights (benchmarks/results/), so it is a default only for models up to this size.
DEFAULT_CODES = ("naive", "checkpoint-zstd", "gguf-file")
CHECKPOINT_DEFAULT_MAX_PARAMS = 16_000_000


def requested_codes(requested: Sequence[str] | None, n_params: int) -> list[str]:
    """The parameter codes a run computes: None -> the defaults for a model of ``n_params``; ("none",) -> none;
    else the names with aliases resolved. Example: requested_codes(None, 10**9) == ["naive", "gguf-file"]."""
    if requested is None:
        return [c for c in DEFAULT_CODES if c != "checkpoint-zstd" or n_params <= CHECKPOINT_DEFAULT_MAX_PARAMS]
    if list(requested) == ["none"]:
        return []
    return [CODE_ALIASES.get(c, c) for c in requested]


def check_codes(requested: Sequence[str] | None) -> None:
    """Refuse an unknown parameter code or width before anything is scored, by the rules of ``expand_codes``."""
    try:
        expand_codes(requested_codes(requested, 0), storage_dtype_bits=32, quantized_bits=QUANTIZED_WIDTHS,
                     has_gguf=True)
    except ValueError as exc:
        raise InputError(f"--two-part: {exc}") from None


def expand_codes(codes: Sequence[str], *, storage_dtype_bits: int, quantized_bits: Sequence[int],
                 has_gguf: bool) -> tuple[list[int], bool, bool, list[int]]:
    """(naive widths, checkpoint?, gguf?, quantized widths) from family names, in a stable order.

    Example: ("naive", "quantized-4") with storage 32 -> ([16, 32], False, False, [4]).
    "gguf-file" is silently dropped for a model that was not loaded from a GGUF file (it is a default).
    """
    naive: list[int] = []
    quant: list[int] = []
    checkpoint = gguf = False
    for code in codes:
        family, _, width = code.partition("-") if code.startswith(("naive-", "quantized-")) else (code, "", "")
        if width and not (width.isdigit() and 1 <= int(width) <= (8 if family == "quantized" else 64)):
            raise ValueError(f"bad width in parameter code {code!r}: use naive-<1..64> or quantized-<1..8>")
        if family == "naive":
            naive += [int(width)] if width else [16, 32, storage_dtype_bits]
        elif family == "quantized":
            quant += [int(width)] if width else list(quantized_bits)
        elif family == "checkpoint-zstd":
            checkpoint = True
        elif family == "gguf-file":
            gguf = has_gguf
        else:
            raise ValueError(f"unknown parameter code {code!r}; choose from {', '.join(CODE_FAMILIES)} "
                             "or naive-<bits>, quantized-<bits>")
    return sorted(set(naive)), checkpoint, gguf, sorted(set(quant), reverse=True)


def two_part_rows(model: torch.nn.Module, tokenizer: Any, *, data_bits: float, n_bytes: int,
                  codes: Sequence[str] = DEFAULT_CODES,
                  rescore: Callable[[torch.nn.Module], float] | None = None,
                  gguf_path: Path | None = None, storage_dtype_bits: int | None = None,
                  tokenizer_files: Sequence[Path] | None = None,
                  quantized_bits: Sequence[int] = QUANTIZED_WIDTHS, group_size: int | None = None,
                  zstd_level: int = 19) -> list[dict[str, Any]]:
    """Rows of the ``two_part`` table for one run.

    Args:
        model: the model that produced ``data_bits`` (not modified).
        tokenizer: its tokenizer (None: no tokenizer cost), coded as ``tokenizer_files`` or, when those are not
            given, as the files ``save_pretrained`` writes.
        data_bits: L(data | model) of the corpus, including first-token and end costs.
        n_bytes: UTF-8 bytes of the same corpus.
        codes: families to compute: "naive" (16, 32 and the storage width), "checkpoint-zstd", "gguf-file"
            (only when ``gguf_path`` is given), "quantized" (every width in ``quantized_bits``, plus
            "quantized-best"); "naive-<b>" / "quantized-<k>" pick one width. Quantized codes are opt-in:
            each one copies the model and calls ``rescore`` once.
        rescore: maps a (dequantized) model to the corpus' data bits, under exactly the protocol that
            produced ``data_bits``. Required for quantized codes.
        gguf_path: the GGUF file the model was loaded from.
        storage_dtype_bits: bits per parameter of the checkpoint as stored (16 for a bf16 checkpoint scored
            in float32); default: the in-memory dtype.
        quantized_bits, group_size, zstd_level: quantizer widths, columns per scale (None: whole row), codec
            (the level is recorded in each row's ``detail``).

    Returns:
        One dict per code, columns in the ``two_part`` schema's order, ready for ``tables.to_arrow("two_part", ...)``.
    """
    from mdlbench.mdl import params, weights_code  # torch-side; imported here so the tables load without torch

    if n_bytes <= 0:
        raise ValueError(f"n_bytes must be positive, got {n_bytes}")
    if storage_dtype_bits is None:
        storage_dtype_bits = params.storage_dtype_bits(model)
    naive_widths, want_checkpoint, want_gguf, quant_widths = expand_codes(
        codes, storage_dtype_bits=storage_dtype_bits, quantized_bits=quantized_bits, has_gguf=gguf_path is not None)
    if quant_widths and rescore is None:
        raise ValueError("quantized codes need `rescore` (model -> data bits): L(data | quantized model) is "
                         "measured, not assumed; drop 'quantized' from codes or pass rescore")
    n_params = params.count_parameters(model).params_total
    tokenizer_bits = weights_code.tokenizer_code(tokenizer, files=tokenizer_files, zstd_level=zstd_level).model_bits

    results: list[TwoPartCode] = []
    for bits in naive_widths:
        results.append(TwoPartCode(f"naive-{bits}", naive_model_bits(n_params, bits), tokenizer_bits, data_bits,
                                   f"{bits} bits x {n_params} unique params"))
    if want_checkpoint:
        wc = weights_code.checkpoint_code(model, zstd_level=zstd_level)
        results.append(TwoPartCode(wc.param_code, wc.model_bits, tokenizer_bits, data_bits, wc.detail))
    if want_gguf:
        assert gguf_path is not None
        wc = weights_code.gguf_file_code(gguf_path)
        # A llama.cpp GGUF carries the vocabulary and merges in its metadata: charging the tokenizer files
        # again would count the tokenizer twice.
        embedded = weights_code.gguf_embeds_tokenizer(gguf_path)
        results.append(TwoPartCode(wc.param_code, wc.model_bits, 0.0 if embedded else tokenizer_bits, data_bits,
                                   wc.detail + ("; tokenizer inside the file" if embedded else "")))
    quantized: list[TwoPartCode] = []
    for bits in quant_widths:
        qm = weights_code.quantize_model(model, bits, group_size=group_size, zstd_level=zstd_level)
        assert rescore is not None
        quantized.append(TwoPartCode(qm.code.param_code, qm.code.model_bits, tokenizer_bits,
                                     float(rescore(qm.model)), qm.code.detail))
        del qm  # one dequantized copy alive at a time
    results += quantized
    if len(quantized) > 1:
        results.append(best_of(quantized))
    return [two_part_row(code, n_bytes=n_bytes, n_params=n_params) for code in results]


def missing_codes(requested: Sequence[str], present: Sequence[str], *, has_gguf: bool) -> list[str]:
    """The entries of ``requested`` (families or single codes) that ``present`` param codes do not cover.

    "naive" is covered by naive-16 and naive-32, "quantized" by every width in QUANTIZED_WIDTHS, "gguf-file"
    always for a model that was not loaded from a GGUF file (it has no such code). Example:
    missing_codes(["naive", "quantized-4"], ["naive-16", "naive-32"], has_gguf=False) == ["quantized-4"].
    """
    have = set(present)
    needs = {"naive": {"naive-16", "naive-32"}, "quantized": {f"quantized-{k}" for k in QUANTIZED_WIDTHS},
             "gguf-file": {"gguf-file"} if has_gguf else set()}
    return [code for code in requested if not needs.get(code, {code}) <= have]


def _order(param_code: str) -> tuple[int, int]:
    """Table order: naive widths ascending, checkpoint, gguf, quantized widths descending, then the best choice."""
    if param_code == "quantized-best":
        return 4, 0
    family, _, width = param_code.partition("-")
    if family == "naive" and width.isdigit():
        return 0, int(width)
    if family == "quantized" and width.isdigit():
        return 3, -int(width)
    return (1 if param_code == "checkpoint-zstd" else 2), 0


def merge_rows(stored: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``two_part`` rows of a run after adding ``new`` codes to ``stored`` ones (a new row replaces a stored one of
    the same code); ``quantized-best`` is chosen again over every quantized code, charged log2 of their number."""
    by_code = {str(r["param_code"]): dict(r) for r in [*stored, *new] if r["param_code"] != "quantized-best"}
    rows = sorted(by_code.values(), key=lambda r: _order(str(r["param_code"])))
    quantized = [r for r in rows if str(r["param_code"]).startswith("quantized-")]
    if len(quantized) > 1:
        codes = [TwoPartCode(str(r["param_code"]), float(r["model_bits"]), float(r["tokenizer_bits"]),
                             float(r["data_bits"]), str(r["detail"])) for r in quantized]
        rows.append(two_part_row(best_of(codes), n_bytes=int(quantized[0]["n_bytes"]),
                                 n_params=int(quantized[0]["n_params"])))
    return rows

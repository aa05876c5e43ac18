"""Real compression: range-code a document with a model's per-token probabilities, and decode it back.

What is coded (the same stream and windows as ``mdlbench run``, scoring/hf.py and windowing.py)::

    stream = [prefix] + tokens + [eos]    prefix under first_token="bos" (context only, never coded);
                                          eos under end="eos" (coded, so its cost is in the code length)
    stream[0] under first_token="uniform" is coded with the uniform distribution over the model's |V|;
    stream[u + 1], u = 0 .. M-1, is coded with p(. | stream[w.input_start : u + 1]) where w is the window of
    plan_windows(M, window, stride) that owns u (M = len(stream) - 1).

The header stores the token count n: the decoder needs M to rebuild the same window plan (the last window of
``plan_windows`` starts at M - window), and uses n to stop. Under end="eos" the EOS is still coded (its bits are
part of the code length that ``mdlbench run`` reports) and the decoder checks that it decodes EOS there.

Coder: constriction 0.5's ``RangeEncoder``/``RangeDecoder`` (32-bit words, 24-bit probabilities) with
``Categorical(perfect=False)`` and one float64 probability row per symbol. The payload is the coder's words,
little-endian, so ``coded_bits = 8 * payload_bytes`` is a multiple of 32. Per symbol the model's probabilities
are computed in float64 from the logits (subtract the max, exp, normalize), floored at PROB_FLOOR so that none is
0; constriction additionally gives every symbol at least 2^-24 when quantizing. ``ideal_bits`` is
Σ −log2 p over those same float64 rows, i.e. the code length ``mdlbench run`` measures (up to the KV-cache vs
batched-forward rounding, about 1e-7 relative).

Fallback: bytes that are not valid UTF-8, text the tokenizer does not round-trip, or token ids outside the
model's output layer are stored as raw bytes (method "raw-bytes": exactly 8 bits per byte, which is the uniform
256-symbol code); the header says why. ``--model uniform-bytes`` always does this (method "uniform-bytes").

Determinism conditions. Decoding recomputes every probability row, and it works only if the decoder's rows are
bit-identical to the encoder's. Both sides therefore run one code path (``_Predictor``): batch size 1; per
window, a fresh forward over the window's context tokens (prefill, no cache) followed by one-token forwards
with the KV cache; the last position's logits only; the softmax in float64 with numpy. Bit-identical rows
additionally need: the same weights (sha256 checked) and tokenizer (sha256 checked); the same window, stride,
first-token and end settings and BOS/EOS ids (stored, checked); the same dtype (stored, used when loading); and
the same numerical environment — device type and hardware, torch and transformers versions (kernel and
attention implementation choice), and torch's intra-op thread count (CPU reductions can split differently).
The environment is recorded in the header and any difference is reported as a warning before decoding. CPU
runs in one environment are deterministic; on CUDA, identical GPU model, driver and library versions are needed
and this was not tested. Never mix batched scoring with coding: a batched forward and the incremental pass
differ by ~1e-6 in probability, which breaks decoding at the first token. If anything differs, decoding fails
with :class:`DecodeMismatchError` (the original's length and sha256 are checked), never with silent garbage.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from mdlbench.codelength import BITS_PER_BYTE, fsum_bits
from mdlbench.coding.container import Container, CorruptFileError, pack, sha256_hex, unpack
from mdlbench.config import UNIFORM_BYTES, RunOptions, ScoringSettings, resolve_windowing
from mdlbench.corpora import Document
from mdlbench.errors import InputError, ScoringError
from mdlbench.scoring.models import LoadedModel
from mdlbench.tables import to_arrow
from mdlbench.windowing import Window, plan_windows

FirstToken = Literal["bos", "uniform"]
End = Literal["eos", "none"]
Method = Literal["model", "raw-bytes", "uniform-bytes"]
CodingModel = LoadedModel | str  # a loaded model, or the string "uniform-bytes"

CODER = "constriction.stream.queue.RangeEncoder+Categorical(perfect=False)"
CODER_PRECISION_BITS = 24  # constriction's default for the queue (range) coder with 32-bit words
PROB_FLOOR = 1e-300  # float64 probabilities below this (exp underflow) are raised to it: −log2 = 996.6 bits

ProgressFn = Callable[[int, int], None]  # (symbols done, symbols total)


class ModelMismatchError(InputError):
    """The file was compressed with another model, tokenizer or setting than the one given for decoding."""


class DecodeMismatchError(InputError):
    """Decoding produced something else than the original (checked against its length and sha256)."""


@dataclass(frozen=True, slots=True)
class CodingSettings:
    """How a document becomes a coded stream; all four are stored in the header and must match on decode."""

    window: int
    stride: int
    first_token: FirstToken = "bos"
    end: End = "eos"


@dataclass(frozen=True, slots=True)
class Compressed:
    blob: bytes  # the whole .mdlz file
    meta: dict[str, Any]
    header_bytes: int
    payload_bytes: int
    ideal_bits: float  # Σ −log2 p of the coded symbols, from the rows the coder used
    n_symbols: int  # symbols coded: tokens (+ first token under uniform, + EOS), or bytes for raw methods
    method: Method
    fallback_reason: str  # "" unless the raw-bytes fallback was taken
    seconds: float

    @property
    def coded_bits(self) -> int:
        return BITS_PER_BYTE * self.payload_bytes


@dataclass(frozen=True, slots=True)
class Decompressed:
    data: bytes
    meta: dict[str, Any]
    n_symbols: int
    seconds: float
    warnings: list[str] = field(default_factory=list)


# -- settings and identity ------------------------------------------------------------------------------------
def resolve_settings(loaded: LoadedModel, *, window: int | None = None, stride: int | None = None,
                     first_token: FirstToken | None = None, end: End | None = None) -> CodingSettings:
    """Defaults and checks exactly as ``mdlbench run`` (window = model context capped at 2048, stride W // 2)."""
    options = RunOptions(window=window, stride=stride, first_token=first_token, end=end)
    settings = resolve_windowing(options, loaded.context_length)
    return CodingSettings(settings.window, settings.stride, settings.first_token, settings.end)


def boundary_ids(loaded: LoadedModel, settings: CodingSettings) -> tuple[int | None, int | None]:
    """(prefix id, eos id) resolved by the scorer itself, so coding and scoring can never disagree."""
    from mdlbench.scoring.hf import HFScorer

    scorer = HFScorer(loaded, ScoringSettings(settings.window, settings.stride, settings.first_token, settings.end))
    return scorer.prefix_token_id, scorer.eos_token_id


def environment(loaded: LoadedModel | None) -> dict[str, Any]:
    """What the probabilities depend on besides the weights: recorded, and compared when decoding."""
    import constriction
    import torch
    import transformers

    env: dict[str, Any] = {"constriction": _version("constriction", constriction), "numpy": np.__version__,
                           "machine": platform.machine()}
    if loaded is not None:
        env.update({"torch": torch.__version__, "transformers": transformers.__version__,
                    "device": loaded.device, "torch_threads": torch.get_num_threads()})
        if loaded.device == "cuda":
            env["gpu"] = torch.cuda.get_device_name()
    return env


def _version(dist: str, module: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def _model_meta(model: CodingModel) -> dict[str, Any]:
    if isinstance(model, str):
        return {"spec": UNIFORM_BYTES, "name": UNIFORM_BYTES}
    # A local folder or .gguf is recorded by absolute path, so decompress finds it from any directory.
    local = model.format in ("folder", "gguf") and model.spec != "default" and model.path is not None
    spec = str(Path(model.path).resolve()) if local else model.spec
    return {"spec": spec, "name": model.name, "format": model.format, "revision": model.revision,
            "sha256": model.sha256, "tokenizer_sha256": model.tokenizer_sha256, "vocab_size": model.vocab_size,
            "dtype": model.dtype, "boundary_token": model.boundary_token}


def _check_model_arg(model: CodingModel) -> None:
    if isinstance(model, str) and model != UNIFORM_BYTES:
        raise InputError(f"model {model!r}: pass a LoadedModel (scoring.models.load_model) or {UNIFORM_BYTES!r}")


# -- the one code path for probabilities ---------------------------------------------------------------------
def _probability_row(logits: Any) -> np.ndarray:
    """(V,) logits of one position -> (V,) float64 probabilities, normalized, every entry >= PROB_FLOOR."""
    z = logits.detach().to("cpu").double().numpy().copy()  # (V,) float64, upcast from the model dtype
    if not np.isfinite(z).all():
        raise ScoringError("the model produced non-finite logits; nothing was written — check the weights and the "
                           "dtype (float16 overflows on some models; use float32)")
    z -= z.max()
    np.exp(z, out=z)
    z /= z.sum()
    np.maximum(z, PROB_FLOOR, out=z)  # exp underflow gives 0 beyond ~745 nats below the max; a code needs > 0
    return z


class _Predictor:
    """Probability rows for stream[u + 1], u = 0, 1, 2, ... in order; encoder and decoder both use this class.

    At the first prediction of each window (u == w.score_start) the cache is dropped and the window's context
    stream[w.input_start : u + 1] is read in one forward; every later prediction of the window reads one token
    with the KV cache. The cache therefore never holds more than ``window`` tokens.
    """

    def __init__(self, loaded: LoadedModel, windows: Sequence[Window]) -> None:
        import torch

        self._torch = torch
        self._model = loaded.model
        self._device = torch.device(loaded.device)
        self._windows = list(windows)
        self._k = -1  # index of the current window
        self._cache: Any = None
        self._next_u = 0

    def row(self, stream: Sequence[int], u: int) -> np.ndarray:
        torch = self._torch
        if u != self._next_u:
            raise RuntimeError(f"predictions must be requested in order: expected u={self._next_u}, got {u}")
        self._next_u += 1
        nxt = self._k + 1
        if nxt < len(self._windows) and self._windows[nxt].score_start == u:
            self._k = nxt
            ids = list(stream[self._windows[nxt].input_start: u + 1])  # prefill the window's context
            self._cache = None
        else:
            ids = [stream[u]]
        with torch.inference_mode():
            x = torch.tensor([ids], dtype=torch.long, device=self._device)  # (1, T) int64
            out = self._model(input_ids=x, past_key_values=self._cache, use_cache=True, logits_to_keep=1)
            self._cache = out.past_key_values
            logits = out.logits[0, -1]  # (V,) model dtype
        return _probability_row(logits)


def _uniform_row(vocab_size: int) -> np.ndarray:
    return np.full(vocab_size, 1.0 / vocab_size, dtype=np.float64)


def _layout(n_tokens: int, prefix_id: int | None, eos_id: int | None, settings: CodingSettings
            ) -> tuple[int, list[Window]]:
    """(stream length, windows) — a function of the header alone, so the decoder rebuilds it exactly."""
    n_stream = (prefix_id is not None) + n_tokens + (eos_id is not None)
    return n_stream, plan_windows(max(0, n_stream - 1), settings.window, settings.stride)


# -- compress ------------------------------------------------------------------------------------------------
def _fallback_reason(loaded: LoadedModel, data: bytes) -> tuple[str, str, list[int]]:
    """(reason for raw bytes or "", text, token ids)."""
    from mdlbench.scoring.tokens import encode, roundtrip_ok

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"input is not valid UTF-8 (byte offset {exc.start}: {exc.reason})", "", []
    ids = encode(loaded.tokenizer, text)
    if not roundtrip_ok(loaded.tokenizer, ids, text):
        return "the tokenizer does not reproduce this text exactly (decode(encode(text)) != text)", text, ids
    too_big = [i for i in ids if not 0 <= i < loaded.vocab_size]
    if too_big:
        return (f"token id {too_big[0]} is outside the model's output layer of {loaded.vocab_size} symbols",
                text, ids)
    return "", text, ids


def compress_bytes(model: CodingModel, data: bytes, *, window: int | None = None, stride: int | None = None,
                   first_token: FirstToken | None = None, end: End | None = None,
                   progress: ProgressFn | None = None) -> Compressed:
    """Code ``data`` with the model into a complete ``.mdlz`` container (see the module docstring).

    Example: with ``model="uniform-bytes"``, b"abc" gives a payload of exactly 3 bytes (24 bits).
    """
    _check_model_arg(model)
    start = time.perf_counter()
    meta: dict[str, Any] = {"original_bytes": len(data), "original_sha256": sha256_hex(data),
                            "model": _model_meta(model), "coder": CODER, "fallback_reason": ""}
    if isinstance(model, str):
        meta.update(method="uniform-bytes", ideal_bits=float(BITS_PER_BYTE * len(data)),
                    environment=environment(None))
        return _finish(meta, data, len(data), start)
    settings = resolve_settings(model, window=window, stride=stride, first_token=first_token, end=end)
    prefix_id, eos_id = boundary_ids(model, settings)
    meta["coding"] = {"window": settings.window, "stride": settings.stride, "first_token": settings.first_token,
                      "end": settings.end, "prefix_token_id": prefix_id, "eos_token_id": eos_id,
                      "precision_bits": CODER_PRECISION_BITS, "prob_floor": PROB_FLOOR}
    meta["environment"] = environment(model)
    reason, _, ids = _fallback_reason(model, data)
    if reason:
        meta.update(method="raw-bytes", fallback_reason=reason, ideal_bits=float(BITS_PER_BYTE * len(data)))
        return _finish(meta, data, len(data), start)
    payload, ideal_bits, n_symbols = _encode_tokens(model, ids, prefix_id, eos_id, settings, progress)
    meta["coding"]["n_tokens"] = len(ids)
    meta.update(method="model", ideal_bits=ideal_bits)
    return _finish(meta, payload, n_symbols, start)


def _finish(meta: dict[str, Any], payload: bytes, n_symbols: int, start: float) -> Compressed:
    blob = pack(meta, payload)
    header = len(blob) - len(payload)
    return Compressed(blob, unpack(blob).meta, header, len(payload), float(meta["ideal_bits"]), n_symbols,
                      meta["method"], meta["fallback_reason"], time.perf_counter() - start)


def _encode_tokens(loaded: LoadedModel, ids: list[int], prefix_id: int | None, eos_id: int | None,
                   settings: CodingSettings, progress: ProgressFn | None) -> tuple[bytes, float, int]:
    """(payload, ideal bits, symbols coded)."""
    import constriction  # its submodules are native attributes, not importable modules


    stream = ([prefix_id] if prefix_id is not None else []) + ids + ([eos_id] if eos_id is not None else [])
    n_stream, windows = _layout(len(ids), prefix_id, eos_id, settings)
    assert n_stream == len(stream)
    family = constriction.stream.model.Categorical(perfect=False)
    encoder = constriction.stream.queue.RangeEncoder()
    bits: list[float] = []
    total = (n_stream - 1 if n_stream else 0) + (settings.first_token == "uniform" and n_stream > 0)

    def code(symbol: int, row: np.ndarray) -> None:
        encoder.encode(np.array([symbol], dtype=np.int32), family, row[None, :])  # one (1, V) float64 row
        bits.append(-math.log2(row[symbol]))
        if progress is not None:
            progress(len(bits), total)

    if settings.first_token == "uniform" and n_stream > 0:
        code(stream[0], _uniform_row(loaded.vocab_size))
    predictor = _Predictor(loaded, windows)
    for u in range(n_stream - 1):
        code(stream[u + 1], predictor.row(stream, u))
    words = encoder.get_compressed()  # (n,) uint32
    return words.astype("<u4").tobytes(), fsum_bits(bits), len(bits)


# -- decompress ----------------------------------------------------------------------------------------------
def check_model(meta: dict[str, Any], loaded: LoadedModel) -> None:
    """Raise ModelMismatchError when ``loaded`` is not the model that compressed a file with this header."""
    want = meta["model"]
    if want.get("spec") == UNIFORM_BYTES:
        raise ModelMismatchError(f"this file was coded with {UNIFORM_BYTES}, not with a model")
    checks = (("weights sha256", "sha256", loaded.sha256), ("tokenizer sha256", "tokenizer_sha256",
              loaded.tokenizer_sha256), ("vocabulary size", "vocab_size", loaded.vocab_size),
              ("dtype", "dtype", loaded.dtype))
    for label, key, have in checks:
        if want.get(key) != have:
            raise ModelMismatchError(
                f"this file was compressed with model {want.get('name')!r} ({label} {want.get(key)}), but the "
                f"model given for decoding, {loaded.name!r}, has {label} {have}; decode with the same model "
                f"(--model {want.get('spec')!r}{' --dtype ' + str(want.get('dtype')) if key == 'dtype' else ''})")


def environment_warnings(meta: dict[str, Any], loaded: LoadedModel) -> list[str]:
    """One warning naming every difference between the recorded and the current numerical environment."""
    recorded, current = meta.get("environment", {}), environment(loaded)
    diffs = [f"{k}: compressed with {recorded.get(k)!r}, decoding with {current.get(k)!r}"
             for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    if not diffs:
        return []
    return ["the numerical environment differs from the one that compressed this file, so probabilities may "
            "not be bit-identical and decoding may fail (" + "; ".join(diffs) + ")"]


_REQUIRED_KEYS = ("original_bytes", "original_sha256", "model", "ideal_bits")
_REQUIRED_CODING_KEYS = ("window", "stride", "first_token", "end", "prefix_token_id", "eos_token_id", "n_tokens")


def read(blob: bytes, *, name: str = "input") -> Container:
    """Parse and check a container (magic, version, CRC, payload sha256); the metadata says how to decode."""
    container = unpack(blob, name=name)
    meta = container.meta
    if meta.get("method") not in ("model", "raw-bytes", "uniform-bytes"):
        raise CorruptFileError(f"{name}: unknown coding method {meta.get('method')!r} in the header")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if meta["method"] == "model":
        coding = meta.get("coding") if isinstance(meta.get("coding"), dict) else {}
        missing += [f"coding.{k}" for k in _REQUIRED_CODING_KEYS if k not in coding]
    if missing:
        raise CorruptFileError(f"{name}: the header lacks {', '.join(missing)} (damaged, or not written by "
                               "`mdlbench compress`)")
    return container


def decompress_bytes(blob: bytes, model: CodingModel | None = None, *, name: str = "input",
                     progress: ProgressFn | None = None) -> Decompressed:
    """Decode a container. ``model`` is needed only for method "model"; it must be the compressing model."""
    start = time.perf_counter()
    container = read(blob, name=name)
    meta = container.meta
    warnings: list[str] = []
    if meta["method"] in ("raw-bytes", "uniform-bytes"):
        data, n_symbols = container.payload, len(container.payload)
    else:
        if model is None or isinstance(model, str):
            raise ModelMismatchError(f"{name} was compressed with model {meta['model'].get('name')!r}; decoding "
                                     f"needs that model (--model {meta['model'].get('spec')!r})")
        check_model(meta, model)
        warnings = environment_warnings(meta, model)
        try:
            data, n_symbols = _decode_tokens(model, meta, container.payload, name, progress)
            _check_original(meta, data, name)
        except DecodeMismatchError as exc:
            raise DecodeMismatchError(" ".join([str(exc), *warnings])) from None
    _check_original(meta, data, name)
    return Decompressed(data, meta, n_symbols, time.perf_counter() - start, warnings)


def _decode_tokens(loaded: LoadedModel, meta: dict[str, Any], payload: bytes, name: str,
                   progress: ProgressFn | None) -> tuple[bytes, int]:
    import constriction


    c = meta["coding"]
    settings = CodingSettings(int(c["window"]), int(c["stride"]), c["first_token"], c["end"])
    if loaded.context_length is not None and settings.window > loaded.context_length:
        raise ModelMismatchError(f"{name}: window {settings.window} exceeds the model's context")
    prefix_id, eos_id = boundary_ids(loaded, settings)
    if (prefix_id, eos_id) != (c["prefix_token_id"], c["eos_token_id"]):
        raise ModelMismatchError(
            f"{name}: compressed with BOS/EOS ids {c['prefix_token_id']}/{c['eos_token_id']}, the model given "
            f"resolves {prefix_id}/{eos_id}; pass the same --boundary-token "
            f"({meta['model'].get('boundary_token')!r})")
    n_tokens = int(c["n_tokens"])
    n_stream, windows = _layout(n_tokens, prefix_id, eos_id, settings)
    if len(payload) % 4:
        raise DecodeMismatchError(f"{name}: payload of {len(payload)} bytes is not whole 32-bit words")
    words = np.frombuffer(payload, dtype="<u4").astype(np.uint32)
    decoder = constriction.stream.queue.RangeDecoder(words)
    family = constriction.stream.model.Categorical(perfect=False)
    stream: list[int] = [prefix_id] if prefix_id is not None else []
    total = (n_stream - 1 if n_stream else 0) + (settings.first_token == "uniform" and n_stream > 0)
    done = 0

    def decode(row: np.ndarray) -> None:
        nonlocal done
        stream.append(int(decoder.decode(family, row[None, :])[0]))
        done += 1
        if progress is not None:
            progress(done, total)

    if settings.first_token == "uniform" and n_stream > 0:
        decode(_uniform_row(loaded.vocab_size))
    predictor = _Predictor(loaded, windows)
    for u in range(n_stream - 1):
        decode(predictor.row(stream, u))
    if eos_id is not None and stream[-1] != eos_id:
        raise DecodeMismatchError(_mismatch_message(name, "the decoded stream does not end with EOS"))
    first = 1 if prefix_id is not None else 0
    ids = stream[first: first + n_tokens]
    if not ids:
        return b"", done
    text = loaded.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return text.encode("utf-8"), done


def _mismatch_message(name: str, what: str) -> str:
    return (f"{name}: decoding failed — {what}. The probabilities differ from the ones used to compress: same "
            "model and tokenizer, but another numerical environment (device, torch/transformers version, thread "
            "count), or the file was altered; see the determinism conditions in mdlbench/coding/coder.py")


def _check_original(meta: dict[str, Any], data: bytes, name: str) -> None:
    if len(data) != meta["original_bytes"] or sha256_hex(data) != meta["original_sha256"]:
        raise DecodeMismatchError(_mismatch_message(
            name, f"the output ({len(data)} bytes) does not match the original's length ({meta['original_bytes']} "
                  "bytes) and sha256"))


# -- verification for `mdlbench run --verify-coding` ---------------------------------------------------------
CODING_TABLE = "coding"


def verify_coding(loaded_model: CodingModel, docs: Sequence[Document], *, window: int,
                  stride: int | None = None, first_token: FirstToken = "bos", end: End = "eos",
                  doc_indices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Compress and decompress each document; one row per document with the ``coding`` table's columns.

    ``ideal_bits`` equals the ``code_length_bits`` that ``mdlbench run`` reports for the same document and
    settings (same stream, same windows) up to float rounding of the incremental vs batched forward.
    A decode that does not reproduce the document gives ``roundtrip_ok = False``; other errors propagate.
    """
    _check_model_arg(loaded_model)
    rows = []
    for i, doc in enumerate(docs):
        data = doc.text.encode("utf-8")
        packed = compress_bytes(loaded_model, data, window=window, stride=stride, first_token=first_token,
                                end=end)
        t0 = time.perf_counter()
        try:
            ok = decompress_bytes(packed.blob, loaded_model).data == data
        except DecodeMismatchError:
            ok = False
        decode_seconds = time.perf_counter() - t0
        n_tokens = int(packed.meta["coding"]["n_tokens"]) if packed.method == "model" else len(data)
        rows.append({"doc_index": int(doc_indices[i]) if doc_indices is not None else i, "doc_id": doc.doc_id,
                     "method": packed.method, "n_tokens": n_tokens, "ideal_bits": packed.ideal_bits,
                     "coded_bits": packed.coded_bits, "overhead_bits": packed.coded_bits - packed.ideal_bits,
                     "header_bytes": packed.header_bytes, "roundtrip_ok": ok,
                     "encode_seconds": packed.seconds, "decode_seconds": decode_seconds})
    return rows


def coding_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows of :func:`verify_coding` -> the ``coding`` Arrow table (commit it under the run's run_id)."""
    return to_arrow(CODING_TABLE, rows)

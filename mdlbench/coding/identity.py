"""What a container records about how it was coded, and the checks decoding makes against it.

Settings are resolved exactly as ``mdlbench run`` resolves them, and the BOS/EOS ids by the scorer itself, so
coding and scoring can never disagree about the stream. The model is identified by its weights and tokenizer
sha256; the numerical environment (versions, device, threads) is recorded and compared, with a warning, because
bit-identical rows need it too (coder.py lists the determinism conditions).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mdlbench.config import UNIFORM_BYTES, End, FirstToken, RunOptions, ScoringSettings, resolve_windowing
from mdlbench.errors import InputError
from mdlbench.scoring.models import LoadedModel

Method = Literal["model", "raw-bytes", "uniform-bytes"]
CodingModel = LoadedModel | str  # a loaded model, or the string "uniform-bytes"

# Recorded and checked: a file coded another way is refused by name rather than decoded into garbage.
CODER = "constriction.stream.queue.RangeEncoder+Categorical(perfect=False), two levels: block of ceil(sqrt(V)), symbol"
CODER_PRECISION_BITS = 24  # constriction's default for the queue (range) coder with 32-bit words
# How rows are computed (lockstep.py, rows.py: float32 softmax of the last position, right-aligned batch KV cache):
# recorded, so that a file is never decoded with rows computed another way.
ROWS = "lockstep-v2"  # v2: float32 softmax rows (v1: unnormalized exponentials)
SCHEDULE = "longest-first-slots-v1"


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


def resolve_settings(loaded: LoadedModel, *, window: int | None = None, stride: int | None = None,
                     first_token: FirstToken | None = None, end: End | None = None) -> CodingSettings:
    """Defaults and checks exactly as ``mdlbench run`` (window = model context capped at 2048, stride W // 2)."""
    options = RunOptions(window=window, stride=stride, first_token=first_token, end=end)
    settings = resolve_windowing(options, loaded.context_length)
    w, s = settings.window, settings.stride
    config = loaded.model.config
    sliding = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    if isinstance(sliding, int) and 0 < sliding < w:
        raise InputError(f"model {loaded.spec!r} attends within a sliding window of {sliding} tokens, shorter than "
                         f"the coding window {w}; the batched coder does not support that: pass --window {sliding}")
    return CodingSettings(w, s, settings.first_token, settings.end)


def boundary_ids(loaded: LoadedModel, settings: CodingSettings) -> tuple[int | None, int | None]:
    """(prefix id, eos id) resolved by the scorer itself, so coding and scoring can never disagree."""
    from mdlbench.scoring.hf import HFScorer

    scorer = HFScorer(loaded, ScoringSettings(settings.window, settings.stride, settings.first_token, settings.end))
    return scorer.prefix_token_id, scorer.eos_token_id


def environment(loaded: LoadedModel | None) -> dict[str, Any]:
    """What the probabilities depend on besides the weights: recorded, and compared when decoding."""
    import constriction
    import numpy as np

    env: dict[str, Any] = {"constriction": _version("constriction", constriction), "numpy": np.__version__,
                           "machine": platform.machine()}
    if loaded is not None:
        import torch
        import transformers

        env.update({"torch": torch.__version__, "transformers": transformers.__version__,
                    "device": loaded.device, "torch_threads": torch.get_num_threads()})
        if loaded.device == "cpu":  # the instruction set torch's and oneDNN's kernels were chosen for
            env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        if loaded.device == "cuda":
            env["gpu"] = torch.cuda.get_device_name()
    return env


def _version(dist: str, module: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return str(getattr(module, "__version__", "unknown"))


def model_meta(model: CodingModel) -> dict[str, Any]:
    if isinstance(model, str):
        return {"spec": UNIFORM_BYTES, "name": UNIFORM_BYTES}
    # A local folder or .gguf is recorded by absolute path, so decompress finds it from any directory.
    local = model.format in ("folder", "gguf") and model.spec != "default" and model.path is not None
    spec = str(Path(model.path).resolve()) if local else model.spec
    return {"spec": spec, "name": model.name, "format": model.format, "revision": model.revision,
            "sha256": model.sha256, "tokenizer_sha256": model.tokenizer_sha256, "vocab_size": model.vocab_size,
            "dtype": model.dtype, "boundary_token": model.boundary_token}


def check_model_arg(model: CodingModel) -> None:
    if isinstance(model, str) and model != UNIFORM_BYTES:
        raise InputError(f"model {model!r}: pass a LoadedModel (scoring.models.load_model) or {UNIFORM_BYTES!r}")


def check_model(header: dict[str, Any], loaded: LoadedModel) -> None:
    """Raise ModelMismatchError when ``loaded`` is not the model that compressed a file with this header."""
    want = header["model"]
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


def environment_warnings(header: dict[str, Any], loaded: LoadedModel) -> list[str]:
    """One warning naming every difference between the recorded and the current numerical environment."""
    recorded, current = header.get("environment", {}), environment(loaded)
    diffs = [f"{k}: compressed with {recorded.get(k)!r}, decoding with {current.get(k)!r}"
             for k in sorted(set(recorded) | set(current)) if recorded.get(k) != current.get(k)]
    if not diffs:
        return []
    return ["the numerical environment differs from the one that compressed this file, so probabilities may "
            "not be bit-identical and decoding may fail (" + "; ".join(diffs) + ")"]


def fallback_reason(loaded: LoadedModel, data: bytes) -> tuple[str, list[int]]:
    """(why the bytes must be stored raw, or "" when the model can code them; the token ids)."""
    from mdlbench.scoring.tokens import encode, roundtrip_ok

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"input is not valid UTF-8 (byte offset {exc.start}: {exc.reason})", []
    ids = encode(loaded.tokenizer, text)
    if not roundtrip_ok(loaded.tokenizer, ids, text):
        return "the tokenizer does not reproduce this text exactly (decode(encode(text)) != text)", ids
    vocab_size = loaded.vocab_size  # a property that walks the model: once, not per token
    too_big = [i for i in ids if not 0 <= i < vocab_size]
    if too_big:
        return f"token id {too_big[0]} is outside the model's output layer of {vocab_size} symbols", ids
    return "", ids


def mismatch_message(name: str, what: str) -> str:
    return (f"{name}: decoding failed — {what}. The probabilities differ from the ones used to compress: same "
            "model and tokenizer, but another numerical environment (device, torch/transformers version, thread "
            "count), or the file was altered; see the determinism conditions in mdlbench/coding/coder.py")

"""Options, literals and shared constants, and the one strict loader that turns a mapping into a frozen config.

Pure: imports the standard library only, so the CLI, the job loader and every module can use it at no cost.

``RunOptions`` holds everything ``mdlbench run`` takes besides the model and corpus specs. It validates itself on
construction (ranges, choices), whether it comes from flags or from a job file, so a bad value fails before
anything is read or written. ``resolve_windowing`` applies the protocol preset and the defaults against a model's
context length.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from mdlbench.errors import InputError

FirstToken = Literal["bos", "uniform"]
End = Literal["eos", "none"]
Protocol = Literal["mdlbench", "lm-eval"]
Utf8Errors = Literal["strict", "replace"]
Dtype = Literal["float32", "bfloat16", "float16"]
Device = Literal["auto", "cpu", "cuda", "mps"]
ProgressMode = Literal["auto", "bar", "json", "none"]
DTYPES: tuple[str, ...] = typing.get_args(Dtype)
DEVICES: tuple[str, ...] = typing.get_args(Device)

UNIFORM_BYTES = "uniform-bytes"  # the non-neural sanity line: every byte costs exactly 8 bits
DEFAULT_MODEL = "default"
DEFAULT_MODELS = (DEFAULT_MODEL, UNIFORM_BYTES)
DEFAULT_CORPUS = "sample"
# What a no-argument `mdlbench run` scores: a named selection of `sample` that keeps its four domains and answers in
# minutes on 2 CPU cores (mdlbench/data/manifests/sample-quick.toml); `-c sample` scores all of it.
RUN_DEFAULT_CORPUS = "sample-quick"
DEFAULT_OUT = "mdlbench-results"
OUT_ENV = "MDLBENCH_OUT"
DEFAULT_WINDOW_CAP = 2048  # default window: the model's context, capped here (memory and comparability)
LM_EVAL_FALLBACK_WINDOW = 2048  # lm-eval's HFLM max_length when the config names none
# Config attributes that hold a model's context length, in the order transformers families use them.
CONTEXT_LENGTH_ATTRS = ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length")


def default_out_dir() -> Path:
    return Path(os.environ.get(OUT_ENV, DEFAULT_OUT))


def context_length_of(config: Any) -> int | None:
    """The context length a transformers config declares (first positive int of CONTEXT_LENGTH_ATTRS), or None."""
    for attr in CONTEXT_LENGTH_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


# ------------------------------------------------------------------------------------------ the strict loader


def suggest(key: str, known: typing.Iterable[str]) -> str:
    """'did you mean ...?' for a near miss, else the list of known keys."""
    known = sorted(known)
    match = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {match[0]!r}?" if match else f"known keys: {', '.join(known)}"


def _matches(value: Any, annotation: Any) -> bool:
    """Whether a TOML/JSON value fits a field annotation (str, int, float, bool, Literal, Optional, tuples)."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return isinstance(value, (list, tuple)) and all(_matches(v, args[0]) for v in value) if args else True
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    return True


def describe(annotation: Any) -> str:
    """Human-readable type of a field, for error messages."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(a) for a in typing.get_args(annotation) if a is not type(None))
    if origin in (tuple, list):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"a list of {describe(args[0])}" if args else "a list"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        annotation, getattr(annotation, "__name__", str(annotation)))


def strict_from_mapping(cls: type, data: Mapping[str, Any], where: str, *, exclude: typing.Iterable[str] = ()) -> Any:
    """Build the frozen dataclass ``cls`` from ``data``: unknown keys (and ``exclude``d ones) and values of the
    wrong type are InputErrors naming ``where``, the key and the fix; lists become tuples."""
    excluded = set(exclude)
    hints = typing.get_type_hints(cls)
    allowed = [f.name for f in dataclasses.fields(cls) if f.name not in excluded and f.init]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in allowed:
            raise InputError(f"{where}: unknown key {key!r}; {suggest(key, allowed)}")
        if not _matches(value, hints[key]):
            raise InputError(f"{where}: {key} = {value!r} has the wrong type; expected {describe(hints[key])}")
        values[key] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


# ------------------------------------------------------------------------------------------------ run options


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _at_least(minimum: float) -> dict[str, float]:
    return {"min": minimum}


@dataclass(frozen=True, slots=True)
class RunOptions:
    """Everything `mdlbench run` takes besides the model and corpus specs. ``None`` means "the default", which is
    never encoded as 0. Every numeric option has a range, checked on construction (``validate``)."""

    window: int | None = field(default=None, metadata=_at_least(1))  # None: model context, capped at 2048
    stride: int | None = field(default=None, metadata=_at_least(1))  # None: window // 2 (lm-eval: window)
    first_token: FirstToken | None = None
    end: End | None = None
    protocol: Protocol = "mdlbench"
    dtype: Dtype = "float32"
    device: Device = "auto"
    batch_size: int | Literal["auto"] = field(default="auto", metadata=_at_least(1))  # results do not depend on it
    per_token: bool = False
    model_revision: str | None = None
    boundary_token: str | None = None
    trust_remote_code: bool = False
    text_field: str = "text"
    id_field: str | None = None
    corpus_revision: str | None = None
    data_files: str | None = None
    max_docs: int | None = field(default=None, metadata=_at_least(1))
    max_bytes: int | None = field(default=None, metadata=_at_least(1))
    errors: Utf8Errors = "strict"
    bootstrap_samples: int = field(default=10_000, metadata=_at_least(0))  # 0: no confidence interval
    seed: int = field(default=0, metadata=_at_least(0))
    force: bool = False
    progress: ProgressMode = "auto"
    checkpoint_docs: int = field(default=16, metadata=_at_least(1))  # documents per crash-safe chunk
    shard: str | None = None  # "I/N": score only chunks k with k % N == I (run/state.py)
    # Extras: separate tables, not part of the run id (they do not change the code lengths).
    baselines: tuple[str, ...] | None = None  # compressor names; None = all; ("none",) = none
    two_part: tuple[str, ...] | None = None  # parameter codes; None = the defaults; ("none",) = none
    # Real range coding of the first N documents, or of all of them.
    verify_coding: int | Literal["all"] = field(default=0, metadata=_at_least(0))
    prequential: bool = False  # also run prequential MDL on each corpus
    prequential_seeds: str = "0,1,2"
    prequential_arch: str | None = None  # transformers config JSON for the prequential model
    prequential_tokenizer: str = "bytes"  # bytes | smollm2 | a tokenizer folder (prequential/vocab.py)
    prequential_arch_grid: str | None = None  # TOML grid: one prequential run per (n_layer, ffn_ratio) cell
    lens: bool = False  # the FFN lens with its default settings after the run (lens/, README "Model anatomy")

    def __post_init__(self) -> None:
        validate(self)


def validate(options: Any, name: typing.Callable[[str], str] = _flag) -> None:
    """Check every field of a frozen options dataclass against its annotation (a float field takes an int, never
    NaN or inf; an int field takes no float, string or bool) and its range metadata (``min``: at least; ``below``:
    less than); the message names the option (``name(field)``, a flag by default), the value and what is
    accepted."""
    hints = typing.get_type_hints(type(options))
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        problem = value_problem(value, hints[f.name], f.metadata)
        if problem:
            raise InputError(f"{name(f.name)} {value!r}: {problem}")


def value_problem(value: Any, annotation: Any, bounds: Mapping[str, Any]) -> str | None:
    """What is wrong with one value of a field (None: nothing), as the second half of an error line."""
    if not _matches(value, annotation):
        return f"expected {describe(annotation)}"
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    minimum, below = bounds.get("min"), bounds.get("below")
    if not math.isfinite(value):
        return "must be a finite number"
    if minimum is not None and below is not None and not minimum <= value < below:
        return f"must be >= {minimum:g} and < {below:g}"
    if minimum is not None and value < minimum:
        return f"must be >= {minimum:g}"
    return None


@dataclass(frozen=True, slots=True)
class CorpusEntry:
    """One corpus of a job: its spec and display name, and how to read it where it differs from the run's options
    (None: the run's ``text_field``, ``id_field``, ``data_files``, ``corpus_revision``; no ``domain`` label)."""

    spec: str
    name: str | None = None
    text_field: str | None = None
    id_field: str | None = None
    data_files: str | None = None
    revision: str | None = None
    domain: str | None = None


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One model of a job: its spec and display name (None: the name its files give)."""

    spec: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ScoringSettings:
    """How a document becomes a code, resolved for one model. Every field changes numbers except batch_size
    (None: auto), which must not."""

    window: int
    stride: int
    first_token: FirstToken = "bos"
    end: End = "eos"
    batch_size: int | None = None
    per_token: bool = False


def resolve_windowing(options: RunOptions, context_length: int | None) -> ScoringSettings:
    """Apply the protocol preset and the defaults; validate against the model's context."""
    first, end, window, stride = options.first_token, options.end, options.window, options.stride
    if options.protocol == "lm-eval":
        # lm-evaluation-harness loglikelihood_rolling: disjoint prediction windows of max_length with one
        # token of carried context, the prefix (BOS, else EOS) on the first window only, no EOS cost.
        for value, flag, allowed in ((first, "--first-token", "bos"), (end, "--end", "none")):
            if value not in (None, allowed):
                raise InputError(f"--protocol lm-eval fixes {flag} {allowed}; drop {flag} {value}")
        window = window or context_length or LM_EVAL_FALLBACK_WINDOW
        if stride not in (None, window):
            raise InputError(f"--protocol lm-eval scores disjoint windows (stride = window = {window}); drop --stride")
        stride, first, end = window, "bos", "none"
    if window is None:
        window = min(context_length or DEFAULT_WINDOW_CAP, DEFAULT_WINDOW_CAP)
    if stride is None:
        stride = max(1, window // 2)
    if not 1 <= stride <= window:
        raise InputError(f"--stride {stride} must be between 1 and --window {window}; each window scores its last "
                         "stride tokens with window − stride tokens of context")
    if context_length is not None and window > context_length:
        raise InputError(f"--window {window} exceeds the model's context of {context_length} tokens; "
                         f"use --window {context_length} or less")
    batch = None if options.batch_size == "auto" else int(options.batch_size)
    return ScoringSettings(window, stride, first or "bos", end or "eos", batch, options.per_token)

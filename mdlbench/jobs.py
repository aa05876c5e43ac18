"""Job files: declarative, strictly validated TOML for scheduled runs (`mdlbench run JOB.toml`).

    out = "results"                       # optional, relative to the working directory; --out overrides
    models = ["default", "uniform-bytes"]
    corpora = ["sample"]

    [options]                             # any `mdlbench run` option, with underscores
    window = 2048
    stride = 1024
    checkpoint_docs = 64

Unknown keys and wrong types are errors that name the key, the file and the fix (with a "did you mean").
"""

from __future__ import annotations

import difflib
import sys
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from mdlbench.errors import InputError
from mdlbench.pipeline import RunOptions

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_LEVEL_KEYS = ("out", "models", "corpora", "options")
NOT_IN_JOBS = ("progress", "force", "shard")  # belong to one invocation, not to the job's definition


@dataclass(frozen=True, slots=True)
class Job:
    path: Path
    models: tuple[str, ...]
    corpora: tuple[str, ...]
    options: RunOptions
    out: Path | None


def _suggest(key: str, known: list[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1)
    return f"did you mean {match[0]!r}?" if match else f"known keys: {', '.join(sorted(known))}"


def _check_type(value: Any, annotation: Any) -> bool:
    """Loose check of a TOML value against a dataclass field annotation (str, int, bool, Literal, Optional)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, a) for a in typing.get_args(annotation) if a is not type(None))
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (tuple, list):
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return True


def load_job(path: Path) -> Job:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such job file; give the path of a .toml job (see jobs/ for examples)")
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid TOML ({exc}); fix the syntax") from None
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise InputError(f"{path}: unknown key {key!r}; {_suggest(key, list(TOP_LEVEL_KEYS))}")
    for key in ("models", "corpora"):
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise InputError(f"{path}: {key!r} must be a non-empty list of strings, e.g. {key} = [\"sample\"]")
    hints = typing.get_type_hints(RunOptions)
    allowed = [f.name for f in fields(RunOptions) if f.name not in NOT_IN_JOBS]
    raw_options = data.get("options", {})
    if not isinstance(raw_options, dict):
        raise InputError(f"{path}: [options] must be a table")
    for key, value in raw_options.items():
        if key not in allowed:
            raise InputError(f"{path}: unknown key {key!r} in [options]; {_suggest(key, allowed)}")
        if not _check_type(value, hints[key]):
            raise InputError(f"{path}: [options] {key} = {value!r} has the wrong type or value; expected "
                             f"{_describe(hints[key])}")
    options = RunOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in raw_options.items()})
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise InputError(f"{path}: 'out' must be a string path")
    # A relative `out` is relative to the working directory, like --out.
    return Job(path, tuple(data["models"]), tuple(data["corpora"]), options, Path(out) if out else None)


def _describe(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(annotation) if a is not type(None))
    return getattr(annotation, "__name__", str(annotation))

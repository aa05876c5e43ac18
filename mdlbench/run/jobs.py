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

import sys
from dataclasses import dataclass
from pathlib import Path

from mdlbench.config import RunOptions, strict_from_mapping, suggest
from mdlbench.errors import InputError

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
            raise InputError(f"{path}: unknown key {key!r}; {suggest(key, TOP_LEVEL_KEYS)}")
    for key in ("models", "corpora"):
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise InputError(f"{path}: {key!r} must be a non-empty list of strings, e.g. {key} = [\"sample\"]")
    raw_options = data.get("options", {})
    if not isinstance(raw_options, dict):
        raise InputError(f"{path}: [options] must be a table")
    try:
        options = strict_from_mapping(RunOptions, raw_options, f"{path} [options]", exclude=NOT_IN_JOBS)
    except InputError as exc:
        raise InputError(f"{path}: {exc}" if not str(exc).startswith(str(path)) else str(exc)) from None
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise InputError(f"{path}: 'out' must be a string path")
    # A relative `out` is relative to the working directory, like --out.
    return Job(path, tuple(data["models"]), tuple(data["corpora"]), options, Path(out) if out else None)

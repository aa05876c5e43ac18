"""Job files: declarative, strictly validated TOML for scheduled runs (`mdlbench run JOB.toml`).

    out = "results"                       # optional, relative to the working directory; --out overrides
    models = ["default", "uniform-bytes"]
    corpora = ["sample"]

    [options]                             # any `mdlbench run` option, with underscores
    window = 2048
    stride = 1024
    checkpoint_docs = 64

Unknown keys and wrong types are errors that name the key, the file and the fix (with a "did you mean").
A model or corpus is a spec (``"NAME=SPEC"`` names it), or a table: ``{spec = "data/web.jsonl", name = "web",
text_field = "body", id_field = "url", data_files = ..., revision = ..., domain = "web"}`` for a corpus read
differently from the others, ``{spec = "models/tiny0", name = "tiny"}`` for a model.
``window`` and ``stride`` may be lists (a window sweep): one run per value, a list paired with a list of the same
length or with a single value (``window = [256, 512, 1024]`` with ``stride = [128, 256, 512]`` or no stride).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.config import CorpusEntry, ModelEntry, RunOptions, strict_from_mapping, suggest
from mdlbench.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_LEVEL_KEYS = ("out", "models", "corpora", "options")
NOT_IN_JOBS = ("progress", "force", "shard")  # belong to one invocation, not to the job's definition
JOB_LIST_EXAMPLES = {  # (a string entry, a table entry) for the error that shows how a list is written
    "models": ('"default"', '{spec = "./checkpoints/step-1000", name = "step-1000"}'),
    "corpora": ('"sample"', '{spec = "data.jsonl", name = "web"}'),
}


SWEEPABLE = ("window", "stride")


@dataclass(frozen=True, slots=True)
class Job:
    path: Path
    models: tuple[str | ModelEntry, ...]
    corpora: tuple[str | CorpusEntry, ...]
    variants: tuple[RunOptions, ...]  # one per swept value; a single one without a sweep
    out: Path | None

    @property
    def options(self) -> RunOptions:
        return self.variants[0]


def _sweep(raw: dict[str, Any], where: str) -> list[dict[str, Any]]:
    """The [options] table once per swept value of window/stride (lists paired, a single value broadcast)."""
    lists = {k: raw[k] for k in SWEEPABLE if isinstance(raw.get(k), list)}
    if not lists:
        return [raw]
    lengths = {len(v) for v in lists.values()}
    if len(lengths) != 1 or 0 in lengths:
        raise InputError(f"{where}: {' and '.join(f'{k} ({len(v)} values)' for k, v in lists.items())} must be "
                         "non-empty lists of the same length (one run per position), or single values")
    (n,) = lengths
    return [{**raw, **{k: v[i] for k, v in lists.items()}} for i in range(n)]


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
    entries: dict[str, list[Any]] = {}
    for key, cls in (("models", ModelEntry), ("corpora", CorpusEntry)):
        value = data.get(key)
        if not isinstance(value, list) or not value or not all(isinstance(v, (str, dict)) for v in value):
            example = JOB_LIST_EXAMPLES[key]
            raise InputError(f"{path}: {key!r} must be a non-empty list of specs (strings, or tables such as "
                             f"{example[1]}), e.g. {key} = [{example[0]}]")
        entries[key] = [v if isinstance(v, str) else strict_from_mapping(cls, v, f"{path} {key}[{i}]")
                        for i, v in enumerate(value)]
    raw_options = data.get("options", {})
    if not isinstance(raw_options, dict):
        raise InputError(f"{path}: [options] must be a table")
    where = f"{path} [options]"
    variants = []
    for values in _sweep(raw_options, where):
        try:
            variants.append(strict_from_mapping(RunOptions, values, where, exclude=NOT_IN_JOBS))
        except InputError as exc:
            raise InputError(str(exc) if str(exc).startswith(str(path)) else f"{where}: {exc}") from None
    out = data.get("out")
    if out is not None and not isinstance(out, str):
        raise InputError(f"{path}: 'out' must be a string path")
    # A relative `out` is relative to the working directory, like --out.
    return Job(path, tuple(entries["models"]), tuple(entries["corpora"]), tuple(variants), Path(out) if out else None)

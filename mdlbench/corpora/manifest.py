"""Pinned corpus manifests (TOML): what a corpus is, where its bytes come from, and their sha256.

Example (``data_manifests/NAME.toml``)::

    name = "my-corpus"
    description = "What it is"
    license = "CC-BY-4.0"

    [[sources]]
    path = "texts/part-0.jsonl"      # relative to the manifest file; or package:mdlbench/data/sample.jsonl
    sha256 = "9f86d0..."
    n_bytes = 289464
    text_field = "text"              # optional, for jsonl/parquet
    id_field = "id"                  # optional
    select = ["a", "b"]              # optional: only these document ids (in the file's order)
    domain = "prose"                 # optional: domain of documents without a domain field

    [[sources]]
    hf = "wikitext"                  # a Hugging Face dataset, pinned by revision instead of sha256
    config = "wikitext-2-raw-v1"
    split = "test"
    revision = "b08601e04326c79dfdd32d625aee71d232d685c3"

Loading verifies every local file's size and sha256 before a single document is read.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.config import strict_from_mapping
from mdlbench.corpora.files import folder_files, reading
from mdlbench.digests import file_sha256
from mdlbench.errors import InputError
from mdlbench.fsio import write_text_atomic

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE_PREFIX = "package:"
MANIFEST_ENV = "MDLBENCH_MANIFESTS"
BUILTIN_MANIFESTS = Path(__file__).resolve().parent.parent / "data" / "manifests"


@dataclass(frozen=True, slots=True)
class Source:
    path: str | None = None
    sha256: str | None = None
    n_bytes: int | None = None
    hf: str | None = None
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    data_files: str | None = None
    text_field: str = "text"
    id_field: str | None = None
    domain_field: str | None = "domain"
    domain: str = ""
    license: str = ""
    origin: str = ""
    # Only these documents of the source, by id, in the source's order (a named selection of a bigger corpus).
    select: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    description: str
    license: str
    sources: tuple[Source, ...]
    path: Path
    sha256: str  # of the manifest file's bytes: pins the whole corpus definition


def labelled_manifest_dirs() -> list[tuple[str, Path]]:
    """(where, folder) in lookup order: each $MDLBENCH_MANIFESTS entry, ./data_manifests, the built-ins."""
    env = [(f"${MANIFEST_ENV}", Path(p)) for p in os.environ.get(MANIFEST_ENV, "").split(os.pathsep) if p]
    return [*env, ("./data_manifests", Path.cwd() / "data_manifests"), ("built-in", BUILTIN_MANIFESTS)]


def manifest_dirs() -> list[Path]:
    """Where manifest names are looked up, first match wins: $MDLBENCH_MANIFESTS, ./data_manifests, built-ins."""
    return [path for _, path in labelled_manifest_dirs()]


def find_manifest(name: str) -> Path | None:
    for d in manifest_dirs():
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
    return None


def load_manifest(path: Path) -> Manifest:
    raw = path.read_bytes()
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a valid TOML manifest ({exc}); fix the file") from None
    sources = data.pop("sources", None)
    if not sources:
        raise InputError(f"{path}: a manifest needs at least one [[sources]] entry")
    top = {k: data.pop(k, "") for k in ("name", "description", "license")}
    if data:
        raise InputError(f"{path}: unknown key {next(iter(data))!r}; known keys: name, description, license, sources")
    parsed = tuple(strict_from_mapping(Source, s, f"{path} [[sources]] #{i}") for i, s in enumerate(sources))
    for i, s in enumerate(parsed):
        if (s.path is None) == (s.hf is None):
            raise InputError(f"{path}: source #{i} needs exactly one of 'path' or 'hf'")
        if s.path is not None and (s.sha256 is None or s.n_bytes is None):
            raise InputError(f"{path}: source #{i} ({s.path}) must pin sha256 and n_bytes; "
                             "write manifests with `mdlbench manifest create`")
    return Manifest(top["name"] or path.stem, top["description"], top["license"], parsed, path,
                    hashlib.sha256(raw).hexdigest())


def resolve_source_path(manifest_path: Path, source_path: str) -> Path:
    if source_path.startswith(PACKAGE_PREFIX):
        pkg_root = Path(__file__).resolve().parent.parent.parent
        return pkg_root / source_path.removeprefix(PACKAGE_PREFIX)
    p = Path(source_path)
    return p if p.is_absolute() else manifest_path.parent / p


def verify_manifest(manifest: Manifest) -> None:
    """Every pinned local file exists with the pinned size and sha256."""
    for s in manifest.sources:
        if s.path is None:
            continue
        p = resolve_source_path(manifest.path, s.path)
        if not p.is_file():
            raise InputError(f"manifest {manifest.name!r}: file {p} is missing; restore it or re-create the "
                             f"manifest with `mdlbench manifest create`")
        with reading(p):
            digest, n_bytes = file_sha256(p)
        if digest != s.sha256 or n_bytes != s.n_bytes:
            raise InputError(f"manifest {manifest.name!r}: file {p} has sha256 {digest[:12]}… ({n_bytes} bytes) but "
                             f"the manifest pins {str(s.sha256)[:12]}… ({s.n_bytes} bytes); the file changed — "
                             "restore it or re-create the manifest")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_manifest(path: Path, name: str, description: str, license_: str, sources: list[dict[str, Any]]) -> None:
    lines = [f"name = {_toml_value(name)}", f"description = {_toml_value(description)}",
             f"license = {_toml_value(license_)}", ""]
    for s in sources:
        lines.append("[[sources]]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in s.items() if v is not None]
        lines.append("")
    write_text_atomic(path, "\n".join(lines))


def create_manifest(target: str, name: str, out_dir: Path, *, description: str = "", license_: str = "",
                    text_field: str = "text", id_field: str | None = None, revision: str | None = None) -> Path:
    """Write OUT_DIR/NAME.toml pinning a local file/folder (sha256 + size of each file) or an HF dataset revision."""
    from mdlbench.corpora.readers import TEXT_SUFFIXES, HFSpec

    out = out_dir / f"{name}.toml"
    sources: list[dict[str, Any]] = []
    if target.startswith("hf:"):
        if not revision:
            raise InputError("an hf: manifest must pin --revision (a commit sha of the dataset repository)")
        spec = HFSpec.parse(target, revision)
        sources.append({"hf": spec.name, "config": spec.config, "split": spec.split, "revision": revision,
                        "text_field": spec.field or text_field, "id_field": id_field})
    else:
        root = Path(target)
        if not root.exists():
            raise InputError(f"{root}: no such file or folder; give the corpus file or folder to pin")
        files = folder_files(root, TEXT_SUFFIXES) if root.is_dir() else [root]
        for p in files:
            with reading(p):
                digest, n_bytes = file_sha256(p)
            rel = os.path.relpath(p.resolve(), out_dir.resolve())
            sources.append({"path": rel, "sha256": digest, "n_bytes": n_bytes,
                            "text_field": text_field if p.suffix not in TEXT_SUFFIXES else None,
                            "id_field": id_field})
    out_dir.mkdir(parents=True, exist_ok=True)  # only once every input is read
    write_manifest(out, name, description, license_, sources)
    return out

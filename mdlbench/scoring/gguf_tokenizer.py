"""A GGUF model's tokenizer splits text as its authors' tokenizer does, or the model is refused.

A GGUF carries a byte-level BPE vocabulary and its merges, but not the pre-tokenizer: the rule that cuts text into
words before any merge. It only names it, in ``tokenizer.ggml.pre`` (llama.cpp's names). transformers rebuilds the
split for the names in its own table and falls back to GPT-2's split for every other name, without a word. Merges
learned on one split, applied to words cut by another, give tokens the model never saw in training: SmolLM2
(``smollm``) isolated every digit, so after GPT-2's split ``"\\n    0"`` becomes ``"\\n   ", " ", "0"`` where the
model's own tokenizer gives ``"\\n    ", "0"``. The text still decodes exactly, so the code is valid, only longer.

Where the facts come from (the code is ours):
- llama.cpp ``src/llama-vocab.cpp``: each name's regexes and flags (``smollm``: every ``\\p{N}`` alone, then GPT-2's
  regex; ``gpt-2``: GPT-2's regex; ``ignore_merges`` set for the Llama-3 group and ``tekken``).
- transformers 5.x ``integrations/gguf/gguf_tokenizer_mapping.py``: ``GGUF_PRE_TOKENIZER_SPLITS``, the names it
  maps. Its regexes equal the originals from each model's ``tokenizer.json`` that llama.cpp quotes in comments
  (checked for llama3, qwen2, qwen35, tekken, gpt-4o). It never sets BPE ``ignore_merges``, which Llama 3's own
  tokenizer sets (a word found whole in the vocabulary is one token; llama.cpp PR #7193: " Việt" is one token, not
  three), so for those names mdlbench sets it as llama.cpp does.

Only vocabularies of type ``gpt2`` (byte-level BPE) are split by a pre-tokenizer; for SentencePiece and Unigram
vocabularies the declared name is recorded and nothing is changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mdlbench.digests import cached_json
from mdlbench.errors import InputError

PRE_KEY = "tokenizer.ggml.pre"
MODEL_KEY = "tokenizer.ggml.model"
BYTE_LEVEL_BPE = "gpt2"  # llama.cpp's name for byte-level BPE vocabularies


def _gpt2_split() -> Any:
    """GPT-2's regex (``'s|'t|... ?\\p{L}+| ?\\p{N}+|...|\\s+(?!\\S)|\\s+``) inside ByteLevel, no prefix space."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def _digits_then_gpt2_split() -> Any:
    """Every numeric character (Unicode N*, as ``\\p{N}``) its own word, then GPT-2's regex on what is left."""
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), _gpt2_split()])


# Names whose pre-tokenizer mdlbench builds itself (transformers has no entry for them, or only its fallback).
BUILT: Mapping[str, Callable[[], Any]] = {
    "smollm": _digits_then_gpt2_split,  # SmolLM / SmolLM2 (llama.cpp: HuggingFaceTB/SmolLM-135M's tokenizer)
    "gpt-2": _gpt2_split,  # GPT-2 itself (openai-community/gpt2)
}

# Names transformers maps to the model's own regex split (its GGUF_PRE_TOKENIZER_SPLITS); kept as it builds them.
TRANSFORMERS_SPLIT = frozenset({
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano",
    "dbrx", "smaug-bpe", "tekken", "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "megrez", "qwen35", "gpt-4o",
    "llama4", "kanana2", "talkie", "minimax-m2",
})

# Of those, the ones whose tokenizer looks a word up whole in the vocabulary before merging (llama.cpp sets
# ignore_merges for exactly these); transformers leaves BPE ignore_merges off.
IGNORE_MERGES = frozenset({
    "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2", "jina-v5-nano", "tekken",
})

SUPPORTED = frozenset(BUILT) | TRANSFORMERS_SPLIT


@dataclass(frozen=True, slots=True)
class DeclaredTokenizer:
    """What a GGUF says about its tokenizer: vocabulary type and pre-tokenizer name ("" when absent)."""

    model: str
    pre: str

    @property
    def byte_level(self) -> bool:
        return self.model == BYTE_LEVEL_BPE


def read_declared(gguf_path: Path) -> DeclaredTokenizer:
    """The two tokenizer names from the GGUF's metadata (no weights are read)."""
    from gguf import GGUFReader

    try:
        fields = GGUFReader(str(gguf_path), "r").fields
    except (OSError, ValueError) as exc:
        raise InputError(f"{gguf_path}: not a readable GGUF file ({exc}); check the path") from None

    def text(key: str) -> str:
        field = fields.get(key)
        value = field.contents() if field is not None else ""
        return value if isinstance(value, str) else ""

    return DeclaredTokenizer(model=text(MODEL_KEY), pre=text(PRE_KEY))


def read_declared_cached(gguf_path: Path, sha256: str) -> DeclaredTokenizer:
    """read_declared, remembered by the file's sha256 (parsing a GGUF's metadata reads its whole vocabulary)."""
    values = cached_json("gguf-tokenizer", sha256, lambda: list(dataclasses.astuple(read_declared(gguf_path))))
    return DeclaredTokenizer(*values)


def require_supported(declared: DeclaredTokenizer, gguf_path: Path) -> None:
    """Refuse a byte-level GGUF whose split transformers would replace by GPT-2's (or that names none)."""
    if not declared.byte_level or declared.pre in SUPPORTED:
        return
    what = f"declares the pre-tokenizer {declared.pre!r}" if declared.pre else f"declares no pre-tokenizer ({PRE_KEY})"
    raise InputError(f"{gguf_path}: its tokenizer {what}, which mdlbench cannot rebuild exactly from a GGUF "
                     f"(transformers would split text as GPT-2 does, not as the model was trained); score the "
                     f"original model instead: its save_pretrained folder or hub id, which carry tokenizer.json")


def rebuild(tokenizer: Any, declared: DeclaredTokenizer, gguf_path: Path) -> None:
    """Give a tokenizer that transformers built from the GGUF the split its authors' tokenizer uses, in place."""
    if not declared.byte_level:
        return
    require_supported(declared, gguf_path)
    backend = tokenizer.backend_tokenizer
    if declared.pre in BUILT:
        backend.pre_tokenizer = BUILT[declared.pre]()
        return
    # A transformers release without this entry would have left its GPT-2 fallback (a bare ByteLevel) in place.
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers") or [{}]
    if pre.get("type") != "Sequence" or steps[0].get("type") != "Split":
        import transformers

        raise InputError(f"{gguf_path}: transformers {transformers.__version__} does not rebuild the pre-tokenizer "
                         f"{declared.pre!r} (it left {pre.get('type')!r}); score the original model instead: its "
                         f"save_pretrained folder or hub id")
    if declared.pre in IGNORE_MERGES:
        backend.model.ignore_merges = True


def load_gguf_tokenizer(gguf_path: Path) -> tuple[Any, DeclaredTokenizer]:
    """The GGUF's tokenizer with its authors' split; refused (InputError) before anything loads if that is unknown."""
    from transformers import AutoTokenizer

    declared = read_declared(gguf_path)
    require_supported(declared, gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    rebuild(tokenizer, declared, gguf_path)
    return tokenizer, declared

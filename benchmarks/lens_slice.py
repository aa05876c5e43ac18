"""Write the corpus slice the README's lens figures were measured on: the first N documents of each domain of the
built-in `sample` (in file order), each cut to its longest prefix of whole lines within --max-doc-bytes, as JSONL
with id, domain and text.

    python benchmarks/lens_slice.py OUT.jsonl [--per-domain 2] [--max-doc-bytes 1000]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "mdlbench" / "data" / "sample.jsonl"


def whole_lines(text: str, max_bytes: int) -> str:
    """The longest prefix of whole lines (each with its newline) within max_bytes UTF-8 bytes; at least one line."""
    out, size = [], 0
    for line in text.splitlines(keepends=True):
        n = len(line.encode("utf-8"))
        if out and size + n > max_bytes:
            break
        out.append(line)
        size += n
    return "".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-domain", type=int, default=2)
    parser.add_argument("--max-doc-bytes", type=int, default=1000)
    args = parser.parse_args()
    taken: dict[str, int] = {}
    with SAMPLE.open(encoding="utf-8") as src, args.out.open("w", encoding="utf-8") as dst:
        for line in src:
            record = json.loads(line)
            domain = record["domain"]
            if taken.get(domain, 0) < args.per_domain:
                taken[domain] = taken.get(domain, 0) + 1
                dst.write(json.dumps({"id": record["id"], "domain": domain,
                                      "text": whole_lines(record["text"], args.max_doc_bytes)},
                                     ensure_ascii=False) + "\n")
    print(f"{args.out}: {sum(taken.values())} documents ({', '.join(f'{d} {n}' for d, n in taken.items())})")


if __name__ == "__main__":
    main()

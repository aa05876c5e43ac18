"""`mdlbench manifest create PATH --name N`: pin a corpus (file sha256s and sizes, or an HF revision)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mdlbench.corpora.manifest import create_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="manifest_command", required=True, metavar="ACTION")
    create = sub.add_parser("create", help="write data_manifests/NAME.toml for a file, folder or hf:... dataset")
    create.add_argument("target", help="a .txt/.jsonl/.parquet file, a folder of text files, or hf:NAME[:CONFIG]:SPLIT")
    create.add_argument("--name", required=True, help="the manifest (and corpus) name")
    create.add_argument("--out-dir", type=Path, default=Path("data_manifests"), help="where to write NAME.toml")
    create.add_argument("--description", default="")
    create.add_argument("--license", default="")
    create.add_argument("--text-field", default="text")
    create.add_argument("--id-field", default=None)
    create.add_argument("--revision", default=None, help="dataset commit sha (required for hf:)")


def main(args: argparse.Namespace) -> int:
    path = create_manifest(args.target, args.name, args.out_dir, description=args.description,
                           license_=args.license, text_field=args.text_field, id_field=args.id_field,
                           revision=args.revision)
    print(f"wrote {path}")
    return 0

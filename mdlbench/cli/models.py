"""`mdlbench models`: the model names `-m` knows without a path, where the packaged default was found, and its size.

Nothing is loaded or hashed: the default is located as `mdlbench run` locates it (scoring.identity), so what this
prints is what a run would use.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import textwrap
from typing import Any

from mdlbench.cli.fmt import fmt_bytes, wrap_lines
from mdlbench.config import DEFAULT_MODEL, UNIFORM_BYTES
from mdlbench.console import CONSOLE_WIDTH
from mdlbench.scoring.identity import (
    DEFAULT_GGUF,
    DEFAULT_HUB_ID,
    DEFAULT_INSTALL,
    DEFAULT_NAME,
    DEFAULT_PACKAGE,
    default_model_location,
)

OTHER_SPECS = ("Any other -m is a save_pretrained folder, a .gguf file, or a hub id (--revision pins a commit; with "
               "HF_HUB_OFFLINE=1 only snapshots already in the cache).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="one JSON object per model on stdout")


def builtin_models() -> list[dict[str, Any]]:
    """The built-in names with what each resolves to here; the default's file, size and package version if found."""
    path = default_model_location()
    try:
        version = importlib.metadata.version(DEFAULT_PACKAGE.replace("_", "-")) if path is not None else None
    except importlib.metadata.PackageNotFoundError:  # importable from a path without package metadata
        version = None
    default: dict[str, Any] = {
        "name": DEFAULT_MODEL, "display_name": DEFAULT_NAME, "format": "gguf",
        "description": f"SmolLM2-135M-Instruct quantized to Q4_1 ({DEFAULT_GGUF}), from the PyPI package "
                       f"{DEFAULT_PACKAGE.replace('_', '-')}",
        "installed": path is not None, "path": None if path is None else str(path),
        "n_bytes": None if path is None else path.stat().st_size, "package_version": version,
        "install": None if path is not None else DEFAULT_INSTALL,
        "fallback": None if path is not None else f"hub id {DEFAULT_HUB_ID} (downloaded unless HF_HUB_OFFLINE=1)"}
    uniform = {"name": UNIFORM_BYTES, "display_name": UNIFORM_BYTES, "format": "none",
               "description": "every byte costs exactly 8 bits: no parameters, no file (the sanity line)",
               "installed": True, "path": None, "n_bytes": 0, "package_version": None, "install": None,
               "fallback": None}
    return [default, uniform]


def main(args: argparse.Namespace) -> int:
    models = builtin_models()
    if args.json:
        for m in models:
            print(json.dumps(m))
        return 0
    width = max(len(m["name"]) for m in models) + 2
    for m in models:
        lines = [m["description"] if m["name"] == m["display_name"] else f"{m['display_name']}: {m['description']}"]
        if m["path"] is not None:
            version = f" {m['package_version']}" if m["package_version"] else ""
            lines += [f"installed: {DEFAULT_PACKAGE.replace('_', '-')}{version}", f"file: {m['path']}",
                      f"size: {fmt_bytes(m['n_bytes'])} ({m['n_bytes']:,} bytes)"]
        elif m["install"] is not None:
            lines += [f"not installed: `{m['install']}` installs it; until then `-m {m['name']}` uses the "
                      f"{m['fallback']}"]
        print(wrap_lines(lines, first=f"{m['name']:<{width}}", indent=width))
    print()
    print(textwrap.fill(OTHER_SPECS, CONSOLE_WIDTH))
    return 0

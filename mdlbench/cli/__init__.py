"""The `mdlbench` command: a plain mapping from subcommand to the module that implements it.

Each module has ``add_arguments(parser)`` and ``main(args) -> exit code``. Only the module of the subcommand being
run is imported (``mdlbench --help`` imports none), so no command pays for libraries it does not use.

Exit codes: 0 done; 2 bad input (nothing computed, nothing written); 3 a run failed while others completed;
4 an OS error (disk full, permissions): nothing committed, a rerun resumes; 130 / 143 interrupted by SIGINT /
SIGTERM: nothing half-committed, finished chunks kept, a rerun resumes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from mdlbench import __version__, signals
from mdlbench.errors import EXIT_BAD_INPUT, EXIT_ENVIRONMENT, Interrupted, MdlbenchError, describe_os_error

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("mdlbench.cli.run", "score corpora under models and write Parquet tables (default: sample × default)"),
    "baselines": ("mdlbench.cli.baselines", "classical compressor baselines on a corpus"),
    "prequential": ("mdlbench.cli.prequential", "prequential (online) MDL of a corpus under a learning model"),
    "lens": ("mdlbench.cli.lens", "what each part of a model costs in bits: component codes, FFN activity, pruning"),
    "compress": ("mdlbench.cli.compress", "compress a file or a corpus with a model and a range coder (.mdlz)"),
    "decompress": ("mdlbench.cli.decompress", "decompress a .mdlz file"),
    "report": ("mdlbench.cli.report", "Markdown/HTML report with figures from a results folder"),
    "compare": ("mdlbench.cli.compare", "paired bits/byte difference of two runs on the same documents"),
    "view": ("mdlbench.cli.view", "one self-contained HTML page: a run's bits (or two runs' difference) on the text"),
    "ls": ("mdlbench.cli.ls", "list the runs in a results folder"),
    "gc": ("mdlbench.cli.gc", "remove incomplete leftovers from a results folder"),
    "merge": ("mdlbench.cli.merge", "assemble sharded runs once all their shards are done"),
    "verify": ("mdlbench.cli.verify", "check every committed file of a results folder against its recorded sha256"),
    "manifest": ("mdlbench.cli.manifest", "create a pinned corpus manifest (sha256 of every file)"),
    "export": ("mdlbench.cli.export", "every table of a results folder as CSV or JSON Lines, one file per table"),
    "models": ("mdlbench.cli.models", "built-in models: where the packaged default is, its size, how to install it"),
    "corpora": ("mdlbench.cli.corpora", "the built-in corpora and the manifests found, with sizes and licenses"),
}


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (what is wrong and where to look), exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}; see `{self.prog} --help`", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser, with the arguments of the one subcommand named in ``argv`` (if any) added."""
    parser = Parser(prog="mdlbench", description="Code lengths of text under language models.")
    parser.add_argument("--version", action="version", version=f"mdlbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(sub_parser)
            sub_parser.set_defaults(_main=module.main, _parser=sub_parser)
    return parser


def entry() -> None:
    """The ``mdlbench`` command (and ``python -m mdlbench``): ``main()``, then exit with its code. After SIGINT or
    SIGTERM the process ends at once, its streams flushed: everything is committed or untouched and the locks are
    released by then, while interpreter shutdown would join the threads and process-pool manager of the abandoned
    work, which can block (seen once in CI: a SIGTERM during scoring, the message printed, the process alive 60 s
    later)."""
    code = main()
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    previous = signals.install()
    try:
        return _main(argv)
    finally:
        signals.restore(previous)


def _main(argv: Sequence[str] | None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we tokenize in our own thread
    argv = list(sys.argv[1:] if argv is None else argv)
    command = "mdlbench"
    try:
        parser = build_parser(argv)
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a usage error (already printed)
            return int(exc.code or 0)
        if args.command is None:
            parser.print_help()
            return EXIT_BAD_INPUT
        command = f"mdlbench {args.command}"
        return int(args._main(args) or 0)
    except MdlbenchError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        if os.environ.get("MDLBENCH_TRACEBACK"):
            traceback.print_exc()
        print(f"{command}: error: {describe_os_error(exc)}; nothing was committed — free disk space or fix the "
              "folder's permissions, then rerun (finished chunks are kept and resume)", file=sys.stderr)
        return EXIT_ENVIRONMENT
    except (Interrupted, KeyboardInterrupt) as exc:
        code = exc.exit_code if isinstance(exc, Interrupted) else 130
        print(f"{command}: interrupted ({exc or 'SIGINT'}); nothing half-committed — rerun to resume from the last "
              "finished chunk", file=sys.stderr)
        return code
